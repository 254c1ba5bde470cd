"""``python -m medseg.bundles``: record the digests of the shipped bundles after changing one."""

from medseg.bundles import DIGESTS_FILE, write_digests

for name, digest in write_digests().items():
    print(f"{name}: {digest[:16]}")
print(f"written to {DIGESTS_FILE}")
