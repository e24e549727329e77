"""Cross-cutting plumbing: errors, envelope, logging, middleware, security."""
