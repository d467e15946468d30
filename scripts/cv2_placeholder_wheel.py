"""Write an empty `opencv-python` wheel that requires opencv-contrib-python (scripts/setup.sh installs it).

mediapipe needs opencv-contrib-python and insightface opencv-python. Both install into the same
site-packages/cv2/ folder, so whichever pip wrote last owns files of the other: a mixed cv2 when their
versions differ. In its place, this wheel keeps insightface's requirement met (pip check stays clean, a
later install does not bring the real one back) while opencv-contrib-python alone provides cv2.

    python scripts/cv2_placeholder_wheel.py VERSION OUT_DIR     # prints the wheel's path
"""
import base64
import hashlib
import os
import sys
import zipfile


def record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def write_wheel(version, out_dir):
    info = f"opencv_python-{version}.dist-info"
    files = {
        f"{info}/METADATA": (f"Metadata-Version: 2.1\nName: opencv-python\nVersion: {version}\n"
                             "Summary: Placeholder: cv2 comes from opencv-contrib-python (PalsySim set-up)\n"
                             "Requires-Dist: opencv-contrib-python\n").encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: palsysim\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "\n".join([record_line(n, d) for n, d in files.items()] + [f"{info}/RECORD,,"]) + "\n"
    path = os.path.join(out_dir, f"opencv_python-{version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w") as z:
        for name, data in {**files, f"{info}/RECORD": record.encode()}.items():
            z.writestr(name, data)
    return path


if __name__ == "__main__":
    print(write_wheel(sys.argv[1], sys.argv[2]))
