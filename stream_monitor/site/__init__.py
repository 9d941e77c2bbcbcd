"""A deployment site: the stream-level drift signal (`drift`), enrolling a site's normal footage
(`enroll`: NERO adapted to it), and the site model built at enrollment — a patch memory of the site's
normal appearance (`patch_memory`, `site_model`), its calibration and fusion with NERO (`calibration`),
how footage is read and grouped (`footage`), stored in the detector artifact (`artifact`) and scored
live beside NERO (`scorer`)."""
