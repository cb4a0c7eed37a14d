"""Reading a VLM's answer leniently."""

from __future__ import annotations

from worker.vision.prompt import frame_schema, parse_frame_answer

TYPES = ("categories", "scene", "tags")


def test_plain_json_is_read() -> None:
    caption, metadata, parsed = parse_frame_answer(
        '{"caption": "A dog.", "categories": ["pets"], "scene": "park", "tags": ["dog"]}', TYPES
    )
    assert (caption, metadata, parsed) == (
        "A dog.",
        {"categories": ["pets"], "scene": "park", "tags": ["dog"]},
        True,
    )


def test_code_fences_and_prose_around_json_are_tolerated() -> None:
    text = 'Here you go:\n```json\n{"caption": "A cat.", "tags": "cat, sofa"}\n```\nHope it helps!'
    caption, metadata, parsed = parse_frame_answer(text, TYPES)
    assert parsed and caption == "A cat."
    assert metadata == {"categories": [], "scene": "", "tags": ["cat", "sofa"]}


def test_unreadable_answer_keeps_the_text_as_caption() -> None:
    caption, metadata, parsed = parse_frame_answer("A red frame. {not json", TYPES)
    assert (caption, metadata, parsed) == ("A red frame. {not json", {}, False)


def test_schema_requires_exactly_the_requested_types() -> None:
    schema = frame_schema(("scene", "tags"))
    assert schema["required"] == ["caption", "scene", "tags"]
    assert schema["properties"]["scene"] == {"type": "string"}
    assert schema["additionalProperties"] is False
