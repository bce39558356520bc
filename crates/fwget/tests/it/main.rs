mod catalog;
mod client;
mod delta;
mod support;
