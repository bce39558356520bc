mod catalog;
mod client;
mod delta;
mod seeds;
mod support;
