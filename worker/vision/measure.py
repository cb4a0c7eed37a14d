"""What the `local` backend measures in one frame with OpenCV (light, colour, sharpness,
faces by Haar cascade, upright people by HOG), and how those map to the metadata types."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from worker.vision.base import FrameMetadata

_DETECT_WIDTH = 480

# Hue ranges on OpenCV's 0-179 scale, upper bounds.
_HUES = [
    (8, "red"),
    (22, "orange"),
    (33, "yellow"),
    (85, "green"),
    (100, "cyan"),
    (130, "blue"),
    (150, "purple"),
    (170, "pink"),
    (180, "red"),
]


@dataclass(frozen=True)
class FrameMeasurements:
    brightness: float
    colourfulness: float
    sharpness: float
    colours: list[str]
    faces: int
    people: int

    def as_details(self) -> dict[str, Any]:
        return {
            "brightness": round(self.brightness, 1),
            "colourfulness": round(self.colourfulness, 1),
            "sharpness": round(self.sharpness, 1),
            "colours": self.colours,
            "faces": self.faces,
            "people": self.people,
        }


def colour_name(bgr: np.ndarray) -> str:
    """Name a BGR colour in a small, stable vocabulary."""
    pixel = np.asarray(bgr, dtype=np.uint8).reshape(1, 1, 3)
    hue, saturation, value = (int(v) for v in cv2.cvtColor(pixel, cv2.COLOR_BGR2HSV)[0, 0])
    if value < 50:
        return "black"
    if saturation < 40:
        return "white" if value > 200 else "gray"
    if value < 110 and 8 < hue <= 22:
        return "brown"
    return next(name for bound, name in _HUES if hue < bound)


class _Detectors:
    """OpenCV detectors are not thread-safe; each thread gets its own."""

    _local = threading.local()

    @classmethod
    def faces(cls) -> cv2.CascadeClassifier:
        if not hasattr(cls._local, "faces"):
            path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"  # type: ignore[attr-defined]
            cls._local.faces = cv2.CascadeClassifier(path)
        return cls._local.faces

    @classmethod
    def people(cls) -> cv2.HOGDescriptor:
        if not hasattr(cls._local, "people"):
            hog = cv2.HOGDescriptor()
            detector = np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector(), np.float32)
            hog.setSVMDetector(detector)
            cls._local.people = hog
        return cls._local.people


def measure(image: np.ndarray) -> FrameMeasurements:
    """Measure one BGR image."""
    height, width = image.shape[:2]
    if width > _DETECT_WIDTH:
        image = cv2.resize(
            image,
            (_DETECT_WIDTH, round(height * _DETECT_WIDTH / width)),
            interpolation=cv2.INTER_AREA,
        )
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    b, g, r = (image[..., i].astype(np.float32) for i in range(3))
    rg, yb = np.abs(r - g), np.abs(0.5 * (r + g) - b)
    # Hasler & Süsstrunk (2003) colourfulness metric.
    colourfulness = float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
    faces = _Detectors.faces().detectMultiScale(
        cv2.equalizeHist(gray), scaleFactor=1.1, minNeighbors=5, minSize=(24, 24)
    )
    hog = _Detectors.people()
    window_w, window_h = hog.winSize
    # Smaller than the detector's window, OpenCV's HOG crashes the process (SIGSEGV); no
    # one could be found in it anyway.
    people: Any = []
    if image.shape[0] >= window_h and image.shape[1] >= window_w:
        people, _weights = hog.detectMultiScale(image, winStride=(8, 8), scale=1.05)
    return FrameMeasurements(
        brightness=float(gray.mean()),
        colourfulness=colourfulness,
        sharpness=float(cv2.Laplacian(gray, cv2.CV_64F).var()),
        colours=_dominant_colours(image),
        faces=len(faces),
        people=len(people),
    )


def _dominant_colours(image: np.ndarray, k: int = 3) -> list[str]:
    pixels = cv2.resize(image, (48, 48), interpolation=cv2.INTER_AREA).reshape(-1, 3)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
    cv2.setRNGSeed(0)  # Deterministic clusters for the same frame.
    _compactness, labels, centres = cv2.kmeans(
        pixels.astype(np.float32),
        k,
        None,
        criteria,
        3,
        cv2.KMEANS_PP_CENTERS,  # type: ignore[call-overload]
    )
    shares = Counter(labels.ravel().tolist())
    names: list[str] = []
    for cluster, _count in shares.most_common():
        name = colour_name(centres[cluster])
        if name not in names:
            names.append(name)
    return names


def describe(m: FrameMeasurements, types: tuple[str, ...]) -> tuple[str, FrameMetadata]:
    """Turn measurements into a caption and the requested metadata."""
    light = "dark" if m.brightness < 70 else "bright" if m.brightness > 185 else "well-lit"
    palette = (
        "black-and-white"
        if m.colourfulness < 8
        else "muted"
        if m.colourfulness < 35
        else "colourful"
        if m.colourfulness > 80
        else "moderately colourful"
    )
    focus = "sharp" if m.sharpness > 100 else "soft or blurry"
    colours = " and ".join(m.colours[:2])
    who = []
    if m.faces:
        who.append(f"{m.faces} face{'s' if m.faces > 1 else ''}")
    if m.people:
        who.append(f"{m.people} upright person{'s' if m.people > 1 else ''}")
    seen = " and ".join(who) + " detected" if who else "no people detected"
    article = "An" if light[0] in "aeiou" else "A"
    caption = f"{article} {light}, {palette}, {focus} frame, mostly {colours}; {seen}."

    categories = []
    if m.faces or m.people:
        categories.append("people")
    if m.faces and not m.people:
        categories.append("close-up")
    categories.append({"dark": "low light", "bright": "bright"}.get(light, "well lit"))
    categories.append(palette)
    participants = (["face"] if m.faces else []) + (["person"] if m.people else [])
    if m.faces + m.people >= 3:
        participants.append("group of people")
    actions = (["facing the camera"] if m.faces else []) + (
        ["standing or walking"] if m.people else []
    )
    tags = [*m.colours, focus.split()[0], *participants]
    metadata: dict[str, Any] = {
        "categories": categories,
        "participants": participants,
        "actions": actions,
        "scene": f"{light} scene, mostly {colours}",
        "tags": tags,
    }
    return caption, {name: metadata[name] for name in types}
