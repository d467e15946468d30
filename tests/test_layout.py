"""One list of photo file types: every command that reads a folder of photos sees the same photos."""
import shutil

from palsysim.layout import find_rest_photo
from palsysim.comfy.plan import find_patients as runner_patients
from palsysim.evaluate import find_patients as evaluate_patients
from palsysim.video import frame_files
from real_faces import photo_paths


def test_the_runner_evaluate_the_rest_finder_and_the_frame_reader_see_the_same_photos(tmp_path):
    folder = tmp_path / "patients" / "p1"
    folder.mkdir(parents=True)
    photo = photo_paths()["astronaut"]
    # a macOS "._" copy and an editor's hidden temporary are not photos; a .webp is no photo for any command
    for name in ("rest.png", "grin.JPG", "whistle.webp", "._grin.png", ".rest.png"):
        shutil.copyfile(photo, folder / name)
    runner = runner_patients(str(tmp_path / "patients"))
    evaluate = evaluate_patients(str(tmp_path / "patients"))
    want = [str(folder / "grin.JPG"), str(folder / "rest.png")]
    assert sorted(runner["p1"].values()) == want, runner
    assert evaluate == {"p1": want}, evaluate
    assert frame_files(str(folder)) == want
    assert find_rest_photo(str(folder)) == str(folder / "rest.png")
