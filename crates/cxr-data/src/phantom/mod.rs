//! The phantom: a synthetic chest X-ray world with patients, sites and reports.
