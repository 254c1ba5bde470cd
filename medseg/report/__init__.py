"""Second-opinion outputs: structure statistics, overlay pictures and HTML reports."""
