//! The Node.js addon of drover (being written).
