//! Resource quantities for the strategies and admission: the machinery's
//! one implementation (upstream's `resource.Quantity`), under the path the
//! registry has always used.

pub use rkube_machinery::quantity::*;
