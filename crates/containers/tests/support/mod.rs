pub mod registry;
pub mod token_proxy;
