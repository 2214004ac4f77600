"""``officehome:Art|Clipart|Product|Real_World[:PATH]``: Office-Home (Venkateswara,
Eusebio, Chakraborty & Panchanathan, CVPR 2017), 65 classes of office and home objects
in four domains (about 15,500 images).

The release's layout is ``OfficeHomeDataset_10072016/<Domain>/<class>/*.jpg`` (the
``Real_World`` folder may also be called ``Real World``), looked for below the data root,
the cache folder or ``PATH`` as ``OfficeHomeDataset_10072016/<Domain>/``,
``officehome/<Domain>/``, ``OfficeHome/<Domain>/`` or ``<Domain>/``; the release archive
``OfficeHomeDataset_10072016.zip`` there (or as ``PATH``) is extracted once into the cache
folder. A domain comes as one set: split by a seeded draw (70% train, 10% val, 20%
test); the benchmarks train and test on all of a target's images (the ``all`` split).
Class labels: the 65 folder names, sorted. Not downloaded: the publisher gives neither a
stable address nor a checksum.
"""

from __future__ import annotations

from dalab.data.domains.release import Release

HOME = "https://www.hemanthdv.org/officeHomeDataset.html"
RELEASE = "OfficeHomeDataset_10072016"
CLASSES = tuple("""
Alarm_Clock Backpack Batteries Bed Bike Bottle Bucket Calculator Calendar Candles Chair
Clipboards Computer Couch Curtains Desk_Lamp Drill Eraser Exit_Sign Fan File_Cabinet
Flipflops Flowers Folder Fork Glasses Hammer Helmet Kettle Keyboard Knives Lamp_Shade Laptop
Marker Monitor Mop Mouse Mug Notebook Oven Pan Paper_Clip Pen Pencil Postit_Notes Printer
Push_Pin Radio Refrigerator Ruler Scissors Screwdriver Shelf Sink Sneakers Soda Speaker Spoon
TV Table Telephone ToothBrush Toys Trash_Can Webcam
""".split())


class OfficeHome(Release):
    kind = "officehome"
    summary = "Office-Home images (65 classes) in its release layout; not downloaded"
    title = "Office-Home"
    domains = ("Art", "Clipart", "Product", "Real_World")
    classes = CLASSES
    layouts = (f"{RELEASE}/{{domain}}", "officehome/{domain}", "OfficeHome/{domain}",
               "{domain}")
    archives = (f"officehome/{RELEASE}.zip", f"{RELEASE}.zip")
    aliases = {"Real_World": ("Real World",)}
    get = ("dalab does not download Office-Home (no stable address or checksum is "
           f"published): get {RELEASE}.zip from {HOME} and put it, or the {RELEASE}/ "
           f"folder it holds, in {{root}}/ (the images as "
           f"{{root}}/{RELEASE}/{{domain}}/<class>/*.jpg)")
