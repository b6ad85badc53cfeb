//! File storage for the transfer service.
