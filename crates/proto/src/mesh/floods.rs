//! Part `floods` of the mesh machine (see the module docs of `mesh`).
