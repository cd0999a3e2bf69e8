"""Generated inputs that tests and benchmarks share: bad files, DICOM, non-X-rays, a live app."""
