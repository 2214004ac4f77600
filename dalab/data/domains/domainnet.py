"""``domainnet:clipart|infograph|painting|quickdraw|real|sketch[:PATH]``: DomainNet (Peng
et al., ICCV 2019, the cleaned release), 345 classes in six domains (about 586,000 images).

The release's layout is ``<domain>/<class>/*.jpg`` (the ``<domain>.zip`` archive) beside
the official lists ``<domain>_train.txt`` and ``<domain>_test.txt`` (``<domain>/<class>/
<file>.jpg label`` lines, the label an index into the classes in the order below),
looked for as ``domainnet/<domain>/``, ``DomainNet/<domain>/`` or ``<domain>/`` below the
data root, the cache folder or ``PATH``; the archive there (or as ``PATH``) is extracted
once into the cache folder, its lists read from beside it. With the lists, the official
split is used: train and test as listed, val a seeded 10% of train; without them every
image of the class folders is one set, split by a seeded draw (70% train, 10% val, 20%
test). Labels follow the lists' class order either way. Not downloaded: no checksum is
published.
"""

from __future__ import annotations

from pathlib import Path

from dalab.data.domains.folder import WHOLE
from dalab.data.domains.release import Release, check_classes, class_folders, listed, subfolders
from dalab.data.folders import ImageList
from dalab.errors import DataError

HOME = "http://ai.bu.edu/M3SDA/"
SERVER = "http://csr.bu.edu/ftp/visda/2019/multi-source"
#: The cleaned release: clipart and painting were re-released under groundtruth/.
ZIPS = {d: f"{SERVER}/{'groundtruth/' if d in ('clipart', 'painting') else ''}{d}.zip"
        for d in ("clipart", "infograph", "painting", "quickdraw", "real", "sketch")}
LISTS = f"{SERVER}/domainnet/txt"
CLASSES = tuple("""
aircraft_carrier airplane alarm_clock ambulance angel animal_migration ant anvil
apple arm asparagus axe backpack banana bandage barn baseball baseball_bat basket
basketball bat bathtub beach bear beard bed bee belt bench bicycle binoculars bird
birthday_cake blackberry blueberry book boomerang bottlecap bowtie bracelet brain
bread bridge broccoli broom bucket bulldozer bus bush butterfly cactus cake
calculator calendar camel camera camouflage campfire candle cannon canoe car carrot
castle cat ceiling_fan cello cell_phone chair chandelier church circle clarinet
clock cloud coffee_cup compass computer cookie cooler couch cow crab crayon
crocodile crown cruise_ship cup diamond dishwasher diving_board dog dolphin donut
door dragon dresser drill drums duck dumbbell ear elbow elephant envelope eraser eye
eyeglasses face fan feather fence finger fire_hydrant fireplace firetruck fish
flamingo flashlight flip_flops floor_lamp flower flying_saucer foot fork frog
frying_pan garden garden_hose giraffe goatee golf_club grapes grass guitar hamburger
hammer hand harp hat headphones hedgehog helicopter helmet hexagon hockey_puck
hockey_stick horse hospital hot_air_balloon hot_dog hot_tub hourglass house
house_plant hurricane ice_cream jacket jail kangaroo key keyboard knee knife ladder
lantern laptop leaf leg light_bulb lighter lighthouse lightning line lion lipstick
lobster lollipop mailbox map marker matches megaphone mermaid microphone microwave
monkey moon mosquito motorbike mountain mouse moustache mouth mug mushroom nail
necklace nose ocean octagon octopus onion oven owl paintbrush paint_can palm_tree
panda pants paper_clip parachute parrot passport peanut pear peas pencil penguin
piano pickup_truck picture_frame pig pillow pineapple pizza pliers police_car pond
pool popsicle postcard potato power_outlet purse rabbit raccoon radio rain rainbow
rake remote_control rhinoceros rifle river roller_coaster rollerskates sailboat
sandwich saw saxophone school_bus scissors scorpion screwdriver sea_turtle see_saw
shark sheep shoe shorts shovel sink skateboard skull skyscraper sleeping_bag
smiley_face snail snake snorkel snowflake snowman soccer_ball sock speedboat spider
spoon spreadsheet square squiggle squirrel stairs star steak stereo stethoscope
stitches stop_sign stove strawberry streetlight string_bean submarine suitcase sun
swan sweater swing_set sword syringe table teapot teddy-bear telephone television
tennis_racquet tent The_Eiffel_Tower The_Great_Wall_of_China The_Mona_Lisa tiger
toaster toe toilet tooth toothbrush toothpaste tornado tractor traffic_light train
tree triangle trombone truck trumpet t-shirt umbrella underwear van vase violin
washing_machine watermelon waterslide whale wheel windmill wine_bottle wine_glass
wristwatch yoga zebra zigzag
""".split())


class DomainNet(Release):
    kind = "domainnet"
    summary = "DomainNet (345 classes, six domains, official train/test lists); not downloaded"
    title = "DomainNet"
    domains = tuple(ZIPS)
    classes = CLASSES
    layouts = ("domainnet/{domain}", "DomainNet/{domain}", "{domain}")
    archives = ("domainnet/{domain}.zip", "DomainNet/{domain}.zip", "{domain}.zip")
    get = ("dalab does not download DomainNet (no checksum is published): get {zip}, "
           f"{LISTS}/{{domain}}_train.txt and {LISTS}/{{domain}}_test.txt (see {HOME}) and "
           "put them in {root}/domainnet/ (the images as {root}/domainnet/{domain}/<class>/"
           "*.jpg, the lists beside that folder)")

    def where_to_get(self) -> str:
        return self.get.format(domain=self.sub_domain, root=self.where.data_root,
                               zip=ZIPS[self.sub_domain])

    def image_lists(self) -> dict[str, ImageList]:
        lists = {s: self._list_file(s) for s in ("train", "test")}
        if not any(lists.values()):
            return {WHOLE: class_folders(self.root, self.classes)}
        if not all(lists.values()):
            found, missing = sorted(lists, key=lambda s: lists[s] is None)
            raise DataError(f"{lists[found]}: found, but not {self.sub_domain}_{missing}.txt "
                            f"beside it; put both official lists there (from {LISTS}/) or "
                            "neither")
        check_classes(self.root, [s.name for s in subfolders(self.root)], self.classes)
        return {s: listed(self.root, f, self.root.parent, self.classes)
                for s, f in lists.items()}

    def _list_file(self, split: str) -> Path | None:
        """``<domain>_<split>.txt`` beside the domain folder, or beside its archive."""
        name = f"{self.sub_domain}_{split}.txt"
        for folder in (self.root.parent, self.archive.parent if self.archive else None):
            if folder is not None and (folder / name).is_file():
                return folder / name
        return None
