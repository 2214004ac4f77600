"""``visda2017:train|validation[:PATH]``: the VisDA-2017 classification challenge (Peng
et al., 2017), 12 classes: ``train`` holds 152,397 synthetic renderings of 3D models,
``validation`` 55,388 real photos (crops of MS COCO).

The release's layout is ``<domain>/image_list.txt`` (``relative/path label`` lines, the
label an index into the 12 classes in the order below) beside one folder per class,
looked for as ``visda2017/<domain>/``, ``VisDA2017/<domain>/`` or ``<domain>/`` below the
data root, the cache folder or ``PATH``; the release archive ``<domain>.tar`` there (or
as ``PATH``) is extracted once into the cache folder. The images are those of the list,
each checked to lie in its label's class folder. A domain comes as one set: split by a
seeded draw (70% train, 10% val, 20% test); the benchmark trains and tests on all of the
target's images (the ``all`` split). Not downloaded: no checksum is published.
"""

from __future__ import annotations

from dalab.data.domains.folder import WHOLE
from dalab.data.domains.release import Release, check_classes, listed, subfolders
from dalab.data.folders import ImageList

HOME = "http://ai.bu.edu/visda-2017/"
URL = "http://csr.bu.edu/ftp/visda17/clf/{domain}.tar"
LIST = "image_list.txt"
CLASSES = ("aeroplane", "bicycle", "bus", "car", "horse", "knife", "motorcycle", "person",
           "plant", "skateboard", "train", "truck")


class Visda2017(Release):
    kind = "visda2017"
    summary = "VisDA-2017 (12 classes; synthetic train, real validation); not downloaded"
    title = "VisDA-2017"
    domains = ("train", "validation")
    classes = CLASSES
    layouts = ("visda2017/{domain}", "VisDA2017/{domain}", "{domain}")
    archives = ("visda2017/{domain}.tar", "{domain}.tar")
    marker = LIST
    get = ("dalab does not download VisDA-2017 (no checksum is published): get "
           f"{URL} (see {HOME}) and put it, or the {{domain}}/ folder it holds, in "
           f"{{root}}/visda2017/ (as {{root}}/visda2017/{{domain}}/{LIST} and "
           "{root}/visda2017/{domain}/<class>/...)")

    def image_lists(self) -> dict[str, ImageList]:
        check_classes(self.root, [s.name for s in subfolders(self.root)], self.classes)
        return {WHOLE: listed(self.root, self.root / LIST, self.root, self.classes)}
