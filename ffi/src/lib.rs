//! The C ABI of drover (being written).
