"""From an archive or an image folder to the prepared splits: reading, decoding, splitting."""
