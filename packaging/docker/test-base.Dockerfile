# TEST ONLY: a stand-in for the pytorch/pytorch base where no image registry can be reached.
# packaging/docker/build_test_image.sh builds it on a Debian root made with debootstrap and
# builds the worker image (Dockerfile) on it with --build-arg BASE_IMAGE=… .
#
# It trusts the BUILD HOST's certificate authorities (host-ca.crt, copied into the build
# context by the script): pip reaches PyPI here through a proxy whose CA only the host
# trusts. That is fine for an image that never leaves this machine, and it is why this
# image and anything built on it must never be pushed: the image users get is built FROM
# pytorch/pytorch (the Dockerfile's default) and carries no such file.
ARG ROOTFS_IMAGE=vsr-test-rootfs:bookworm
FROM ${ROOTFS_IMAGE}

# The same CUDA build of torch as the project's tests use (PyPI's wheels, with their
# nvidia-* libraries), so the Dockerfile's "torch is a CUDA build" check runs for real.
ARG TORCH_SPEC="torch==2.14.1 torchvision==0.29.1"

LABEL org.opencontainers.image.description="vsr-desktop TEST base: trusts the build host's CA; never publish"

COPY host-ca.crt /usr/local/share/vsr-test/host-ca.crt
ENV PATH=/opt/venv/bin:$PATH \
    LANG=C.UTF-8 \
    PIP_CERT=/usr/local/share/vsr-test/host-ca.crt \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python3 -m venv /opt/venv \
 && python -m pip install $TORCH_SPEC \
 && python -c "import torch, torchvision; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
