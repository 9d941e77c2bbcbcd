"""A deployment site: the stream-level drift signal (`drift`) and enrolling a site's normal footage
(`enroll`)."""
