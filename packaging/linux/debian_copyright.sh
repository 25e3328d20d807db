#!/bin/sh
# Print the Debian copyright file (machine-readable format) for the .deb: ours is MIT; the
# bundled components keep their own licences, whose texts ship inside the bundle.
cat <<'TEXT'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: vsr-desktop
Comment: Full licence texts and notices for every bundled component are in
 /opt/vsr-desktop/_internal/vsr_desktop/resources/licenses/ (and third_party/ below it).

Files: *
Copyright: 2026 the vsr_desktop contributors
License: Expat

Files: opt/vsr-desktop/_internal/vsr_desktop/resources/models/*
Copyright: 2021 Xintao Wang (Real-ESRGAN)
License: BSD-3-Clause
Comment: realesr-animevideov3 weights; see RealESRGAN-BSD-3-Clause.txt.

Files: opt/vsr-desktop/_internal/PySide6/* opt/vsr-desktop/_internal/shiboken6/*
Copyright: The Qt Company Ltd. and other contributors
License: LGPL-3.0-only
Comment: unmodified, dynamically loaded; see Qt-LGPL-NOTICE.txt. On Debian systems the
 full text is in /usr/share/common-licenses/LGPL-3.

Files: opt/vsr-desktop/_internal/av/* opt/vsr-desktop/_internal/av.libs/*
Copyright: the FFmpeg developers, the PyAV contributors, x264 and x265 authors
License: GPL-3.0-or-later
Comment: PyAV (BSD-3-Clause) bundles FFmpeg configured with --enable-version3 and linked with
 libx264 and libx265 (GPL-2.0-or-later); see FFmpeg-NOTICE.txt. On Debian systems the full
 text is in /usr/share/common-licenses/GPL-3.

Files: opt/vsr-desktop/_internal/torch/* opt/vsr-desktop/_internal/torchvision/*
Copyright: Facebook, Inc. and its affiliates, and the PyTorch contributors
License: BSD-3-Clause
Comment: see third_party/torch/LICENSE for PyTorch and its own bundled components.

License: Expat
 Permission is hereby granted, free of charge, to any person obtaining a copy of this
 software and associated documentation files (the "Software"), to deal in the Software
 without restriction, including without limitation the rights to use, copy, modify, merge,
 publish, distribute, sublicense, and/or sell copies of the Software, and to permit persons
 to whom the Software is furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in all copies or
 substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED.

License: BSD-3-Clause
 See the BSD-3-Clause texts shipped in the licences folder named above.
TEXT
