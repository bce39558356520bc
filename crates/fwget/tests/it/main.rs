mod catalog;
mod delta;
mod support;
