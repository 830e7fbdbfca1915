"""Prints the include directory of the installed nvidia-cudnn-frontend package."""
import importlib.metadata as md
import pathlib
import sys

try:
    dist = md.distribution("nvidia-cudnn-frontend")
except md.PackageNotFoundError:
    sys.exit("nvidia-cudnn-frontend is not installed: run scripts/setup.sh")
for f in dist.files or []:
    if f.name == "cudnn_frontend.h":
        print(pathlib.Path(dist.locate_file(f)).resolve().parent)
        break
else:
    sys.exit("nvidia-cudnn-frontend has no cudnn_frontend.h")
