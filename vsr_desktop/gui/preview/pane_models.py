"""Model A/B in the preview pane: what each side shows (source, bicubic, the settings'
model or any model), which renderers run (a second model renders in a second renderer,
same frame and region), and each model's speed recorded on its first render.

Functions of PreviewPane (assigned in its class body), kept apart so the pane's module
holds its layout and the still-frame rendering.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vsr_desktop.gui.preview import sides
from vsr_desktop.gui.preview.renderer import PreviewRenderer, PreviewResult
from vsr_desktop.gui.preview.sides import MODEL, Side

if TYPE_CHECKING:
    from vsr_desktop.gui.preview.preview_pane import PreviewPane


def set_side(pane: PreviewPane, index: int, choice: str) -> None:
    """Side 0 (left/before) or 1 (right/after): "source", "bicubic", "settings" (the
    settings' model) or "model:<name>"."""
    if choice.startswith(sides.MODEL_PREFIX) and pane._provider is not None:
        key, factory = pane._provider(choice.removeprefix(sides.MODEL_PREFIX))
        pane._factories[key] = factory
    pane._choices[index] = choice
    pane._update_sides()
    pane._requested = None
    pane._render_now()


def _model_keys(pane: PreviewPane) -> list[str]:
    """Settings keys to render: the right side's model first (the main renderer), then
    the left's (the second renderer); the settings' model when no side shows one (its
    result carries the bicubic picture and the output size)."""
    found = [s.key for s in reversed(pane.view.sides) if s.kind == MODEL and s.key]
    found = list(dict.fromkeys(found))
    return found or [pane._settings_key]


def _lanes(pane: PreviewPane) -> list[tuple[PreviewRenderer, str, bool]]:
    """(renderer, key, primary) for each model being compared."""
    keys = pane._model_keys()
    lanes = [(pane._renderer, keys[0], True)]
    if len(keys) > 1:
        lanes.append((pane._second_renderer(), keys[1], False))
    for renderer, key, _primary in lanes:
        if key in pane._factories:
            renderer.set_engine_factory(key, pane._factories[key])
    return lanes


def _second_renderer(pane: PreviewPane) -> PreviewRenderer:
    if pane._second is None:
        pane._second = PreviewRenderer(pane)
        pane._second.rendered.connect(pane._on_second_rendered)
        pane._second.failed.connect(pane._on_render_failed)
    return pane._second


def _update_sides(pane: PreviewPane) -> None:
    made = [pane._side_for(choice) for choice in pane._choices]
    pane.view.set_sides(made[0], made[1])
    for chooser, choice, side in zip(
        (pane.left_chooser, pane.right_chooser), pane._choices, made, strict=True
    ):
        chooser.show_choice(choice, side.label)


def _side_for(pane: PreviewPane, choice: str) -> Side:
    if choice == sides.SOURCE:
        return Side(sides.SOURCE, label="Source")
    if choice == sides.BICUBIC:
        return Side(sides.BICUBIC, label="Bicubic")
    if choice.startswith(sides.MODEL_PREFIX) and pane._provider is not None:
        key, _factory = pane._provider(choice.removeprefix(sides.MODEL_PREFIX))
        return Side(MODEL, key, sides.label_for_key(key))
    if not pane._has_factory:
        return Side(MODEL, "", "No model")
    return Side(MODEL, pane._settings_key, sides.label_for_key(pane._settings_key))


def _on_second_rendered(pane: PreviewPane, result: PreviewResult) -> None:
    pane._note_speed(result)
    if result.deinterlace != pane._deinterlace:
        return
    if pane.playback.playing:
        pane._on_ahead_rendered(result, primary=False)
    elif result.frame_index == pane.timeline.frame() and result.settings_key in {
        s.key for s in pane.view.sides
    }:
        pane.view.set_result(result, primary=False)


def _note_speed(pane: PreviewPane, result: PreviewResult) -> None:
    """The first render of each model records its speed on this machine."""
    model = sides.model_of_key(result.settings_key)
    pixels = result.region.width * result.region.height
    if model and result.upscale_ms > 0 and pixels and model not in pane._speed_noted:
        pane._speed_noted.add(model)
        sides.record_speed(model, result.upscale_ms / (pixels / 1e6))
