#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod collection;
pub mod filter;
pub mod point;
pub mod search;
