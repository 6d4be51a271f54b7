//! Peer messages of part `vote` (see the module docs of `wire`).
