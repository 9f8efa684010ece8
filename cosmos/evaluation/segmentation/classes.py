"""Class-name lists of the zero-shot segmentation benchmarks (SCLIP's ``configs/cls_*.txt``).

One line per class, in label order; a line may hold comma-separated synonyms ("query names"),
which are max-pooled after the softmax. In VOC21 and COCO-Object class 0 (background) is a list
of 26 stuff names. Names are data copied from wangf3014/SCLIP (spaces removed in some COCO-Stuff /
ADE20K names are kept as SCLIP has them).
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

from cosmos.utils.errors import DataError

_BACKGROUND_STUFF = ("sky, wall, tree, wood, grass, road, sea, river, mountain, sands, desk, "
                     "bed, building, cloud, lamp, door, window, wardrobe, ceiling, shelf, "
                     "curtain, stair, floor, hill, rail, fence")
_PERSON = "person, person in shirt, person in jeans, person in dress, person in sweater, " \
          "person in skirt, person in jacket"

_VOC20 = f"""aeroplane
bicycle
bird
ship
bottle
bus
car
cat
chair
cow
table
dog
horse
motorbike
{_PERSON}
pottedplant
sheep
sofa
train
television monitor, tv monitor, monitor, television, screen"""

_CONTEXT59 = """aeroplane
bag
bed
bedclothes
bench
bicycle
bird
boat
book
bottle
building
bus
cabinet
car
cat
ceiling
chair
cloth
computer
cow
cup
curtain
dog
door
fence
floor
flower
food
grass
ground
horse
keyboard
light
motorbike
mountain
mouse
person
plate
platform
pottedplant
road
rock
sheep
shelves
sidewalk
sign
sky
snow
sofa
table
track
train
tree
truck
tvmonitor
wall
water
window
wood"""

_COCO_THINGS = """bicycle
car
motorcycle
airplane
bus
train
truck
boat
traffic light
fire hydrant
stop sign
parking meter
bench
bird
cat
dog
horse
sheep
cow
elephant
bear
zebra
giraffe
backpack
umbrella
handbag
tie
suitcase
frisbee
skis
snowboard
sports ball
kite
baseball bat
baseball glove
skateboard
surfboard
tennis racket
bottle
wine glass
cup
fork
knife
spoon
bowl
banana
apple
sandwich
orange
broccoli
carrot
hot dog
pizza
donut
cake
chair
couch
potted plant
bed
dining table
toilet
tv
laptop
mouse
remote
keyboard
cell phone
microwave
oven
toaster
sink
refrigerator
book
clock
vase
scissors
teddy bear
hair drier
toothbrush"""

_COCO_STUFF = """person
bicycle
car
motorcycle
airplane
bus
train
truck
boat
trafficlight
firehydrant
stopsign
parkingmeter
bench
bird
cat
dog
horse
sheep
cow
elephant
bear
zebra
giraffe
backpack
umbrella
handbag
tie
suitcase
frisbee
skis
snowboard
sportsball
kite
baseballbat
baseballglove
skateboard
surfboard
tennisracket
bottle
wineglass
cup
fork
knife
spoon
bowl
banana
apple
sandwich
orange
broccoli
carrot
hotdog
pizza
donut
cake
chair
couch
pottedplant
bed
diningtable
toilet
tv
laptop
mouse
remote
keyboard
cellphone
microwave
oven
toaster
sink
refrigerator
book
clock
vase
scissors
teddybear
hairdrier
toothbrush
banner
blanket
branch
bridge
building-other
bush
cabinet
cage
cardboard
carpet
ceiling-other
ceiling-tile
cloth
clothes
clouds
counter
cupboard
curtain
desk-stuff
dirt
door-stuff
fence
floor-marble
floor-other
floor-stone
floor-tile
floor-wood
flower
fog
food-other
fruit
furniture-other
grass
gravel
ground-other
hill
house
leaves
light
mat
metal
mirror-stuff
moss
mountain
mud
napkin
net
paper
pavement
pillow
plant-other
plastic
platform
playingfield
railing
railroad
river
road
rock
roof
rug
salad
sand
sea
shelf
sky-other
skyscraper
snow
solid-other
stairs
stone
straw
structural-other
table
tent
textile-other
towel
tree
vegetable
wall-brick
wall-concrete
wall-other
wall-panel
wall-stone
wall-tile
wall-wood
water-other
waterdrops
window-blind
window-other
wood"""

_CITYSCAPES = """road
sidewalk
building
wall
fence
pole
trafficlight
trafficsign
vegetation
terrain
sky
person
rider
car
truck
bus
train
motorcycle
bicycle"""

_ADE20K = """wall
building
sky
floor
tree
ceiling
road
bed
windowpane
grass
cabinet
sidewalk
person
earth
door
table
mountain
plant
curtain
chair
car
water
painting
sofa
shelf
house
sea
mirror
rug
field
armchair
seat
fence
desk
rock
wardrobe
lamp
bathtub
railing
cushion
base
box
column
signboard
chestofdrawers
counter
sand
sink
skyscraper
fireplace
refrigerator
grandstand
path
stairs
runway
case
pooltable
pillow
screendoor
stairway
river
bridge
bookcase
blind
coffeetable
toilet
flower
book
hill
bench
countertop
stove
palm
kitchenisland
computer
swivelchair
boat
bar
arcademachine
hovel
bus
towel
light
truck
tower
chandelier
awning
streetlight
booth
televisionreceiver
airplane
dirttrack
apparel
pole
land
bannister
escalator
ottoman
bottle
buffet
poster
stage
van
ship
fountain
conveyerbelt
canopy
washer
plaything
swimmingpool
stool
barrel
basket
waterfall
tent
bag
minibike
cradle
oven
ball
food
step
tank
tradename
microwave
pot
animal
bicycle
lake
dishwasher
screen
blanket
sculpture
hood
sconce
vase
trafficlight
tray
ashcan
fan
pier
crtscreen
plate
monitor
bulletinboard
shower
radiator
glass
clock
flag"""


def _lines(text: str) -> Tuple[str, ...]:
    return tuple(line.strip() for line in text.strip().splitlines())


CLASS_NAMES: Dict[str, Tuple[str, ...]] = {
    "voc20": _lines(_VOC20),
    "voc21": (_BACKGROUND_STUFF,) + _lines(_VOC20),
    "context59": _lines(_CONTEXT59),
    "context60": ("background",) + _lines(_CONTEXT59),
    "coco_object": (_BACKGROUND_STUFF, _PERSON + ", body") + _lines(_COCO_THINGS),
    "coco_stuff171": _lines(_COCO_STUFF),
    "cityscapes": _lines(_CITYSCAPES),
    "ade20k": _lines(_ADE20K),
}


def expand_synonyms(class_lines: Sequence[str]) -> Tuple[List[str], List[int]]:
    """Class lines → (query names, class index of each query); synonyms split on ','."""
    queries: List[str] = []
    owners: List[int] = []
    for idx, line in enumerate(class_lines):
        names = [n.strip() for n in line.split(",") if n.strip()]
        if not names:
            raise DataError(f"class {idx} has an empty name line {line!r}")
        queries += names
        owners += [idx] * len(names)
    return queries, owners
