//! Peer messages of part `flood` (see the module docs of `wire`).
