//! Integration tests of the storage engines (one test binary per crate).

mod common;
mod corruption;
mod crash;
mod edge;
mod model;
mod pool_budget;
mod review;
