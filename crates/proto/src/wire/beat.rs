//! Peer messages of part `beat` (see the module docs of `wire`).
