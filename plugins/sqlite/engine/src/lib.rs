#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod bind;
mod columns;
pub mod db;
mod export;
mod relational;
mod schema;
pub mod vector_rows;

pub use db::Db;
pub use relational::SqliteRelational;
