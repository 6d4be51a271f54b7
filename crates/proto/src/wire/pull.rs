//! Peer messages of part `pull` (see the module docs of `wire`).
