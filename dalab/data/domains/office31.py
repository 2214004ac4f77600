"""``office31:amazon|dslr|webcam[:PATH]``: Office-31 (Saenko, Kulis, Fritz & Darrell,
ECCV 2010), 31 office object classes photographed three ways.

amazon: 2,817 product photos (white background); dslr: 498 photos from a DSLR camera;
webcam: 795 photos from a low-resolution webcam. The release's layout is
``<domain>/images/<class>/*.jpg``, looked for as ``office31/<domain>/images/``,
``domain_adaptation_images/<domain>/images/`` or ``<domain>/images/`` below the data root,
the cache folder or ``PATH``; the release archive ``domain_adaptation_images.tar.gz``
there (or as ``PATH``) is extracted once into the cache folder. A domain comes as one
set: split by a seeded draw (70% train, 10% val, 20% test); the benchmarks train and test
on all of a target's photos (the ``all`` split). Class labels: the 31 folder names,
sorted. Not downloaded: the publisher gives neither a stable address nor a checksum.
"""

from __future__ import annotations

from dalab.data.domains.release import Release

HOME = "https://faculty.cc.gatech.edu/~judy/domainadapt/"
CLASSES = tuple("""
back_pack bike bike_helmet bookcase bottle calculator desk_chair desk_lamp desktop_computer
file_cabinet headphones keyboard laptop_computer letter_tray mobile_phone monitor mouse mug
paper_notebook pen phone printer projector punchers ring_binder ruler scissors speaker
stapler tape_dispenser trash_can
""".split())


class Office31(Release):
    kind = "office31"
    summary = "Office-31 photos (31 classes) in its release layout; not downloaded"
    title = "Office-31"
    domains = ("amazon", "dslr", "webcam")
    classes = CLASSES
    layouts = ("office31/{domain}/images", "domain_adaptation_images/{domain}/images",
               "{domain}/images")
    archives = ("office31/domain_adaptation_images.tar.gz", "domain_adaptation_images.tar.gz")
    get = ("dalab does not download Office-31 (no stable address or checksum is published): "
           f"get domain_adaptation_images.tar.gz from {HOME} and put it, or its {{domain}}/ "
           "folder, in {root}/office31/ (the photos as "
           "{root}/office31/{domain}/images/<class>/*.jpg)")
