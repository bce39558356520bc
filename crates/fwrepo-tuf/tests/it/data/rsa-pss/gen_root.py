#!/usr/bin/env python3
"""Writes root.json: a TUF root whose four roles use the RSA key test-only.key.pem with scheme
rsassa-pss-sha256, built and signed by python-tuf and securesystemslib (as a root held on an
RSA HSM would be signed). Run once, with python-tuf 7 and securesystemslib[crypto] installed:
    v/bin/python gen_root.py
The key was made with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`; the
sig-*.hex files are `openssl dgst -sha256 -sign test-only.key.pem -sigopt
rsa_padding_mode:pss -sigopt rsa_pss_saltlen:{32,max} message.txt`, hex-encoded.
"""

import os
from datetime import datetime, timezone

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner, SSlibKey
from tuf.api.metadata import Metadata, Root
from tuf.api.serialization.json import JSONSerializer

HERE = os.path.dirname(os.path.abspath(__file__))

with open(os.path.join(HERE, "test-only.key.pem"), "rb") as f:
    private = load_pem_private_key(f.read(), password=None)
public = SSlibKey.from_crypto(private.public_key(), scheme="rsassa-pss-sha256")
signer = CryptoSigner(private, public)

root = Root(expires=datetime(2099, 1, 1, tzinfo=timezone.utc), consistent_snapshot=True)
for role in ["root", "timestamp", "snapshot", "targets"]:
    root.add_key(public, role)
md = Metadata(root)
md.sign(signer)
with open(os.path.join(HERE, "root.json"), "wb") as f:
    f.write(md.to_bytes(JSONSerializer(compact=False)))
