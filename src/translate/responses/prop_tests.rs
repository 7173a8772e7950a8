//! Property tests (to come).
