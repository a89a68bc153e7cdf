"""What a shoot is made of: image records, the manifest, locations and residency, work reuse, limits."""
