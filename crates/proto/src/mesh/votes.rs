//! Part `votes` of the mesh machine (see the module docs of `mesh`).
