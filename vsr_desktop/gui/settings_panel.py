"""Settings beside the preview: model, scale, denoise, output and device.

Every change is emitted at once (the preview re-renders, the file is saved by the window).
A model that is not here yet offers a download with a progress bar, off the GUI thread.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from vsr_desktop.core.errors import VsrError
from vsr_desktop.core.models.registry import MODEL_REGISTRY, get_spec
from vsr_desktop.core.settings import AppSettings
from vsr_desktop.gui.elided_combo import ElidedComboBox
from vsr_desktop.gui.errors import show_error
from vsr_desktop.gui.tasks import CANCELLED, DONE, Task, TaskContext, TaskResult, TaskRunner

CODEC_LABELS = {
    "h264": "H.264 (most compatible)",
    "h265": "H.265 / HEVC",
    "av1": "AV1 (SVT-AV1)",
    "prores": "ProRes 422 HQ (editing)",
    "vp9": "VP9",
    "prores4444": "ProRes 4444 (editing, alpha)",
    "dnxhr-hq": "DNxHR HQ (editing)",
    "dnxhr-hqx": "DNxHR HQX 10-bit (editing)",
    "ffv1": "FFV1 lossless (archive)",
    "png": "PNG image sequence",
    "tiff": "TIFF image sequence",
}
CONTAINERS = (".mp4", ".mkv", ".mov", ".webm")
#: Target sizes offered (--size); "" is the source times the scale, None a custom size.
SIZE_PRESETS: tuple[tuple[str, str | None], ...] = (
    ("Source × scale", ""),
    ("720p (1280×720)", "1280x720"),
    ("1080p (1920×1080)", "1920x1080"),
    ("1440p (2560×1440)", "2560x1440"),
    ("4K UHD (3840×2160)", "3840x2160"),
    ("Custom…", None),
)
FIT_CHOICES = (
    ("Fit inside", "fit"),
    ("Pad (black bars)", "pad"),
    ("Crop to fill", "crop"),
)
DEINTERLACE_CHOICES = (
    ("Auto (when interlaced)", "auto"),
    ("Off", "off"),
    ("bwdif", "bwdif"),
    ("yadif", "yadif"),
)
SCALES: tuple[tuple[str, float | None], ...] = (
    ("Model's own", None),
    ("×1 (restore only)", 1.0),
    ("×2", 2.0),
    ("×3", 3.0),
    ("×4", 4.0),
)


def model_available(name: str) -> bool:
    """The bundled model is always here; others once downloaded (or a file path that exists)."""
    from vsr_desktop.core.models import DEFAULT_MODEL_NAME, cached_model_path

    if name == DEFAULT_MODEL_NAME:
        return True
    if name in MODEL_REGISTRY:
        spec = MODEL_REGISTRY[name]
        partner = spec.denoise_partner
        here = cached_model_path(spec) is not None
        return here and (partner is None or cached_model_path(get_spec(partner)) is not None)
    return Path(name).is_file()


DOWNLOAD_KEY = "model-download"


def _download(name: str, ctx: TaskContext) -> str:
    """Download a model and its denoise partner (a task: never on the GUI thread)."""
    from vsr_desktop.core.models import download_model

    spec = get_spec(name)
    specs = [spec] + ([get_spec(spec.denoise_partner)] if spec.denoise_partner else [])
    for item in specs:
        download_model(
            item, progress=lambda done, total: ctx.report((done, total)), cancel=ctx.cancel
        )
    return name


class SettingsPanel(QWidget):
    """The form; `settingsChanged` carries a fresh AppSettings copy."""

    settingsChanged = Signal(object)
    modelReady = Signal(str)
    runOnRequested = Signal()  # the "Run on: … ▾" button: the window opens Run on…

    def __init__(self, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("settingsPanel")
        self._settings = replace(settings)
        self._tasks = TaskRunner(self)
        self.download_error: QMessageBox | None = None  # the last download failure's dialog
        self._loading = True
        self._build()
        self._load(settings)
        self._loading = False

    # ------------------------------------------------------------------ building
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        model_box = QGroupBox("Model")
        form = QFormLayout(model_box)
        self.model_combo = ElidedComboBox()
        self.model_combo.setObjectName("modelCombo")
        for name, spec in MODEL_REGISTRY.items():
            if name == "realesr-general-wdn-x4v3":
                continue  # only used through the denoise slider
            self.model_combo.addItem(name, name)
            self.model_combo.setItemData(self.model_combo.count() - 1, spec.description, 3)
        self.model_combo.addItem("Model file…", "")
        form.addRow("Model", self.model_combo)
        self.model_status = QLabel()
        self.model_status.setWordWrap(True)
        self.download_button = QPushButton("Download")
        self.download_button.setObjectName("downloadButton")
        self.download_progress = QProgressBar()
        self.download_progress.setVisible(False)
        status_row = QHBoxLayout()
        status_row.addWidget(self.model_status, 1)
        status_row.addWidget(self.download_button)
        form.addRow(status_row)
        form.addRow(self.download_progress)
        self.scale_combo = ElidedComboBox()
        for label, value in SCALES:
            self.scale_combo.addItem(label, value)
        form.addRow("Scale", self.scale_combo)
        self.denoise_slider = QSlider()
        self.denoise_slider.setOrientation(self.denoise_slider.orientation().Horizontal)
        self.denoise_slider.setRange(0, 100)
        self.denoise_slider.setToolTip("Blend with the denoising variant: 0 = strongest denoise")
        form.addRow("Denoise", self.denoise_slider)
        self.deinterlace_combo = ElidedComboBox()  # interlaced sources: core.media.deinterlace
        for label, mode in DEINTERLACE_CHOICES:
            self.deinterlace_combo.addItem(label, mode)
        self.deinterlace_combo.setToolTip(
            "Interlaced video (TV, tape, DVD) is made into whole frames before the model"
        )
        self.double_rate_check = QCheckBox("One frame per field (50i → 50p)")
        form.addRow("Deinterlace", self.deinterlace_combo)
        form.addRow(self.double_rate_check)
        layout.addWidget(model_box)

        out_box = QGroupBox("Output")
        out = QFormLayout(out_box)
        self.codec_combo = ElidedComboBox()
        for codec, label in CODEC_LABELS.items():
            self.codec_combo.addItem(label, codec)
        out.addRow("Codec", self.codec_combo)
        self.crf_spin = QSpinBox()
        self.crf_spin.setRange(-1, 63)
        self.crf_spin.setSpecialValueText("Default")
        self.crf_spin.setToolTip("CRF: lower is better quality and bigger files")
        out.addRow("Quality (CRF)", self.crf_spin)
        self.preset_combo = ElidedComboBox()  # the codec's presets only (core.media.encode)
        out.addRow("Preset", self.preset_combo)
        self.encoder_combo = ElidedComboBox()  # --encoder (core.hardware_codecs)
        for encoder_label, encoder in (
            ("Auto (hardware when present)", "auto"),
            ("Software", "software"),
            ("NVIDIA NVENC", "nvenc"),
            ("Intel Quick Sync", "qsv"),
            ("AMD AMF", "amf"),
            ("Apple VideoToolbox", "videotoolbox"),
        ):
            self.encoder_combo.addItem(encoder_label, encoder)
        out.addRow("Encoder", self.encoder_combo)
        self.container_combo = ElidedComboBox()  # filled by _sync_codec_widgets: valid ones only
        out.addRow("Container", self.container_combo)
        self._build_size_row(out)
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("Beside the source")
        browse = QPushButton("…")
        browse.setFixedWidth(32)
        browse.clicked.connect(self._browse_folder)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(browse)
        out.addRow("Folder", folder_row)
        layout.addWidget(out_box)

        dev_box = QGroupBox("Device")
        dev = QFormLayout(dev_box)
        self.device_combo = ElidedComboBox()
        for label, device in (
            ("Automatic", "auto"),
            ("CPU", "cpu"),
            ("NVIDIA GPU (CUDA)", "cuda"),
            ("Apple GPU (MPS)", "mps"),
        ):
            self.device_combo.addItem(label, device)
        dev.addRow("Device", self.device_combo)
        self.precision_combo = ElidedComboBox()
        for label, precision in (
            ("Automatic", "auto"),
            ("fp32", "fp32"),
            ("fp16", "fp16"),
            ("bf16", "bf16"),
        ):
            self.precision_combo.addItem(label, precision)
        dev.addRow("Precision", self.precision_combo)
        self.device_label = QLabel("Detecting device…")
        self.device_label.setObjectName("deviceLabel")
        self.device_label.setWordWrap(True)
        dev.addRow(self.device_label)
        layout.addWidget(dev_box)

        run_row = QHBoxLayout()
        self.run_on_button = QPushButton("Run on: Local ▾")
        self.run_on_button.setObjectName("runOnButton")
        self.run_on_button.setToolTip(
            "Where Upscale all sends jobs: this computer, a Slurm cluster or AWS (Ctrl+,)"
        )
        self.run_on_button.clicked.connect(self.runOnRequested)
        run_row.addWidget(self.run_on_button)
        run_row.addStretch(1)
        layout.insertLayout(0, run_row)  # first: where the jobs go is seen without scrolling
        layout.addStretch(1)

        # Combos as wide as the column, not as their longest entry: the column stays narrow
        # enough for a 1366-pixel screen (the lists still open at full width).
        for combo in self.findChildren(QComboBox):
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
            )
            combo.setMinimumContentsLength(8)
        self.codec_combo.currentIndexChanged.connect(self._codec_changed)
        for combo in (
            self.preset_combo,
            self.encoder_combo,
            self.size_combo,
            self.fit_combo,
            self.model_combo,
            self.scale_combo,
            self.container_combo,
            self.device_combo,
            self.precision_combo,
        ):
            combo.currentIndexChanged.connect(self._changed)
        self.denoise_slider.valueChanged.connect(self._changed)
        self.crf_spin.valueChanged.connect(self._changed)
        self.size_edit.editingFinished.connect(self._changed)
        self.folder_edit.editingFinished.connect(self._changed)
        self.download_button.clicked.connect(self.download_selected_model)
        self.deinterlace_combo.currentIndexChanged.connect(self._changed)
        self.double_rate_check.toggled.connect(self._changed)

    def _load(self, s: AppSettings) -> None:
        index = self.model_combo.findData(s.model)
        if index < 0 and s.model:
            self.model_combo.insertItem(self.model_combo.count() - 1, Path(s.model).name, s.model)
            index = self.model_combo.findData(s.model)
        self.model_combo.setCurrentIndex(max(index, 0))
        self.scale_combo.setCurrentIndex(max(self.scale_combo.findData(s.outscale), 0))
        self.denoise_slider.setValue(round(s.denoise_strength * 100))
        self.codec_combo.setCurrentIndex(max(self.codec_combo.findData(s.codec), 0))
        self._sync_codec_widgets()
        self.crf_spin.setValue(self.crf_spin.minimum() if s.crf is None else s.crf)
        self.container_combo.setCurrentIndex(max(self.container_combo.findData(s.container), 0))
        self.preset_combo.setCurrentIndex(max(self.preset_combo.findData(s.preset), 0))
        self.encoder_combo.setCurrentIndex(max(self.encoder_combo.findData(s.encoder), 0))
        self._load_size(s.target_size, s.fit)
        self.folder_edit.setText(s.output_folder)
        self.device_combo.setCurrentIndex(max(self.device_combo.findData(s.device), 0))
        self.precision_combo.setCurrentIndex(max(self.precision_combo.findData(s.precision), 0))
        self.deinterlace_combo.setCurrentIndex(
            max(self.deinterlace_combo.findData(s.deinterlace), 0)
        )
        self.double_rate_check.setChecked(s.double_rate)
        self._update_model_state()

    # ------------------------------------------------------------------ state
    def settings(self) -> AppSettings:
        return replace(self._settings)

    def preview_key(self) -> str:
        """What changes the upscaled picture (the preview cache key)."""
        s = self._settings
        denoise = s.denoise_strength if self._has_denoise(s.model) else None
        return f"{s.model}|{s.outscale}|{denoise}|{s.device}|{s.precision}|{s.tile}"

    def set_run_on(self, label: str) -> None:
        """Show where jobs go (the window owns that choice: Run on…)."""
        self.run_on_button.setText(f"Run on: {label} ▾")

    def set_device_description(self, text: str) -> None:
        self.device_label.setText(f"Found: {text}")

    @staticmethod
    def _has_denoise(model: str) -> bool:
        spec = MODEL_REGISTRY.get(model)
        return spec is not None and spec.denoise_partner is not None

    @Slot()
    def _changed(self) -> None:
        if self._loading:
            return
        model = self.model_combo.currentData()
        if model == "":
            self._choose_model_file()
            return
        crf = self.crf_spin.value()
        if not self.crf_spin.isEnabled() or crf == self.crf_spin.minimum():
            crf = -1  # "Default", or a codec without CRF
        self._settings = replace(
            self._settings,
            model=model,
            outscale=self.scale_combo.currentData(),
            denoise_strength=self.denoise_slider.value() / 100,
            codec=self.codec_combo.currentData(),
            crf=None if crf < 0 else crf,
            container=self.container_combo.currentData(),
            preset=self.preset_combo.currentData() if self.preset_combo.isEnabled() else None,
            encoder=self.encoder_combo.currentData(),
            target_size=self._target_size(),
            fit=self.fit_combo.currentData(),
            output_folder=self.folder_edit.text().strip(),
            device=self.device_combo.currentData(),
            precision=self.precision_combo.currentData(),
            deinterlace=self.deinterlace_combo.currentData(),
            double_rate=self.double_rate_check.isChecked(),
        )
        self._update_model_state()
        self.settingsChanged.emit(self.settings())

    # ------------------------------------------------------------------ output choices
    def _build_size_row(self, out: QFormLayout) -> None:
        """Target size presets (--size) and how the picture meets them (--fit)."""
        self.size_combo = ElidedComboBox()
        for label, size in SIZE_PRESETS:
            self.size_combo.addItem(label, size)
        self.size_edit = QLineEdit()
        self.size_edit.setPlaceholderText("WxH, e.g. 2048x1080")
        self.size_edit.setVisible(False)
        self.fit_combo = ElidedComboBox()
        for label, mode in FIT_CHOICES:
            self.fit_combo.addItem(label, mode)
        row = QHBoxLayout()
        row.addWidget(self.size_combo, 1)
        row.addWidget(self.size_edit, 1)
        out.addRow("Size", row)
        out.addRow("Fit", self.fit_combo)

    def _load_size(self, size: str, fit: str) -> None:
        index = self.size_combo.findData(size)
        if index < 0:  # a custom size
            index = self.size_combo.count() - 1
            self.size_edit.setText(size)
        self.size_combo.setCurrentIndex(index)
        self.fit_combo.setCurrentIndex(max(self.fit_combo.findData(fit), 0))
        self._sync_size_widgets()

    def _target_size(self) -> str:
        """The chosen "WxH" ("" for the source × scale); a custom one that is not WxH
        (or odd where the codec needs even sizes) is refused: the field goes back."""
        from vsr_desktop.core.media.encode import CODECS
        from vsr_desktop.core.media.geometry import check_target, parse_size

        self._sync_size_widgets()
        preset = self.size_combo.currentData()
        if preset is not None:
            return str(preset)
        text = self.size_edit.text().strip()
        try:
            width, height = parse_size(text)
            profile = CODECS[self.codec_combo.currentData()]
            check_target(
                width,
                height,
                "fit",
                even=not profile.image_sequence,
                min_size=profile.min_size or (1, 1),
            )
        except VsrError as exc:
            self.size_edit.setToolTip(exc.user_message())
            self.size_edit.setText(self._settings.target_size)
            return self._settings.target_size
        self.size_edit.setToolTip("")
        return f"{width}x{height}"

    def _sync_size_widgets(self) -> None:
        custom = self.size_combo.currentData() is None
        self.size_edit.setVisible(custom)
        self.fit_combo.setEnabled(custom or bool(self.size_combo.currentData()))

    @Slot()
    def _codec_changed(self) -> None:
        if self._loading:
            return
        self._loading = True  # one settingsChanged for the codec and what follows it
        try:
            self._sync_codec_widgets()
        finally:
            self._loading = False
        self._changed()

    def _sync_codec_widgets(self) -> None:
        """Offer only what the codec takes: its containers, its CRF range, its presets."""
        from vsr_desktop.core.media.encode import CODECS, containers_for_codec

        codec = self.codec_combo.currentData()
        profile = CODECS[codec]
        current = self.container_combo.currentData()
        self.container_combo.clear()
        for suffix in containers_for_codec(codec):
            label = f"{suffix} (numbered files)" if profile.image_sequence else suffix
            self.container_combo.addItem(label, suffix)
        self.container_combo.setCurrentIndex(max(self.container_combo.findData(current), 0))
        if profile.crf_range is None:
            self.crf_spin.setRange(-1, -1)
            self.crf_spin.setEnabled(False)
            self.crf_spin.setToolTip(profile.quality_note or "This codec has no CRF")
        else:
            low, high = profile.crf_range
            self.crf_spin.setRange(low - 1, high)  # the minimum shows "Default"
            self.crf_spin.setEnabled(True)
            self.crf_spin.setToolTip(
                f"CRF {low} (best) to {high} (smallest file); Default: {profile.default_crf}"
            )
        self.preset_combo.clear()
        self.preset_combo.addItem("Default", None)
        for preset in profile.presets:
            self.preset_combo.addItem(preset, preset)
        self.preset_combo.setEnabled(bool(profile.presets))

    def _update_model_state(self) -> None:
        model = self.model_combo.currentData() or self._settings.model
        self.denoise_slider.setEnabled(self._has_denoise(model))
        ready = model_available(model)
        busy = self._tasks.task(DOWNLOAD_KEY) is not None
        self.download_button.setVisible(not ready and model in MODEL_REGISTRY)
        self.download_button.setEnabled(not busy)
        if ready:
            spec = MODEL_REGISTRY.get(model)
            self.model_status.setText(spec.description if spec else "Model file")
        else:
            self.model_status.setText("Not downloaded yet — download it to preview and upscale.")

    def model_is_ready(self) -> bool:
        return model_available(self._settings.model)

    def _choose_model_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a model file", "", "Models (*.pth *.safetensors *.param)"
        )
        if path:
            self.model_combo.blockSignals(True)
            self.model_combo.insertItem(self.model_combo.count() - 1, Path(path).name, path)
            self.model_combo.setCurrentIndex(self.model_combo.findData(path))
            self.model_combo.blockSignals(False)
            self._changed()
        else:
            self.model_combo.blockSignals(True)
            self.model_combo.setCurrentIndex(
                max(self.model_combo.findData(self._settings.model), 0)
            )
            self.model_combo.blockSignals(False)

    @Slot()
    def _browse_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Output folder", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)
            self._changed()

    # ------------------------------------------------------------------ download
    @Slot()
    def download_selected_model(self) -> None:
        name = self._settings.model
        if self._tasks.task(DOWNLOAD_KEY) is not None or name not in MODEL_REGISTRY:
            return
        self.download_progress.setRange(0, 0)
        self.download_progress.setVisible(True)
        self.model_status.setText(f"Downloading {name}…")
        self._tasks.start(
            Task(
                DOWNLOAD_KEY,
                "downloads",
                lambda ctx: _download(name, ctx),
                label=f"download {name}",
                on_progress=self._on_download_progress,
                on_done=self._on_download_done,
            )
        )
        self._update_model_state()

    def _on_download_progress(self, value: object) -> None:
        done, total = value if isinstance(value, tuple) else (0, 0)
        self.download_progress.setRange(0, 1000)
        self.download_progress.setValue(int(1000 * done / total) if total else 0)

    def _on_download_done(self, result: TaskResult) -> None:
        self.download_progress.setVisible(False)
        self._update_model_state()
        if result.outcome == DONE:
            self.modelReady.emit(str(result.value))
            self.settingsChanged.emit(self.settings())
            return
        error = result.value
        message = (
            error.user_message()
            if isinstance(error, VsrError)
            else ("cancelled" if error is None else f"{type(error).__name__}: {error}")
        )
        self.model_status.setText(f"Download failed: {message}")
        self.model_status.setToolTip(message)  # the whole reason, also when the column is narrow
        if result.outcome != CANCELLED:  # a cancel needs no dialog: the user did it
            shown = error if isinstance(error, BaseException) else message
            self.download_error = show_error(self, "The model download failed", shown)

    def shutdown(self) -> None:
        """Cancel a running download and wait for its thread."""
        self._tasks.shutdown()
