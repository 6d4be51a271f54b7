//! Peer messages of part `hello` (see the module docs of `wire`).
