#!/usr/bin/env bash
# Fetches the real third-party test data (pinned PyPI wheels, checked by SHA-256)
# into a cache outside the repository, so no third-party data is ever committed.
# Idempotent: a second run only re-checks hashes. Network use: `pip download` only.
set -euo pipefail
cache=${CXRLEARN_TEST_DATA:-$HOME/.cache/cxrlearn/test-data}
mkdir -p "$cache/wheels"

pip_cmd=""
for c in pip3 pip "python3 -m pip"; do
    if $c --version >/dev/null 2>&1; then pip_cmd=$c; break; fi
done

# wheel file, pinned requirement, sha256 of the wheel
wheels=(
    "torchxrayvision-1.5.7-py3-none-any.whl torchxrayvision==1.5.7 95f6c3475661f3515d4258deb0855bd5d1b1a56e0b65384251d3dd3fa61fac41"
    "pydicom_data-1.0.0-py3-none-any.whl pydicom-data==1.0.0 622ac97265f1d91f76b5120b5bd6eb0f57737c392ef863b72c71779c91e33637"
    "open_clip_torch-2.32.0-py3-none-any.whl open_clip_torch==2.32.0 80b35b43e37afc2b6173aa5ab0ad68744ab3a3211e624f72dfe743a162707637"
    "pydicom-3.0.1-py3-none-any.whl pydicom==3.0.1 db32f78b2641bd7972096b8289111ddab01fb221610de8d7afa835eb938adb41"
)
# member inside its wheel, sha256 of the member
members=(
    "torchxrayvision/data/Data_Entry_2017_v2020.csv.gz 9d4de640ee4f760215d8be98376b20387ca52f9c6b4d1b727cb588fb82f40b80"
    "torchxrayvision/data/PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz 34a10144a87fe00c176f23f9aa174a10137fd425882b09d8fb012ab817d99d65"
    "torchxrayvision/data/chexpert_train.csv.gz cdd70817ac2f13e464d2e35de78cd6831b10382c869c3824c35b44f55928becb"
    "torchxrayvision/data/siim-pneumothorax-train-rle.csv.gz f3663a1ae9d11067b7a37a3c4fb69e22eb3c7a960d4118c47235e0e1cab64489"
    "torchxrayvision/data/vinbigdata-train.csv.gz 3de944071c7178f6187e669a12795ba5fed2bfdc77481437ae587d8c077215c2"
    "torchxrayvision/data/NLMCXR_reports.tgz 8fb6de7eec73d8c3665067ad4bb003ccd57f971ae316d2642e1627ac7268667a"
    "torchxrayvision/data/nlmcxr_dicom_metadata.csv.gz 996c7d7a23b6bef51b1308dfa9671fb59b00e67c8928f7ff45cc002ca16ebf3e"
    "data_store/data/RG1_UNCR.dcm 946f28f48b9fbf360196a9b835c8fce83b0c654bf85a5107663c8a61df02e498"
    "data_store/data/RG1_J2KR.dcm 7fbfd29360af806770102fd7c4ffcb2a133075bd00920a4bb63460d516f67ac4"
    "data_store/data/RG1_J2KI.dcm 744d01372fdda4e21b507bb7f97329065de961f4f263342079b369b430064d65"
    "open_clip/bpe_simple_vocab_16e6.txt.gz 924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
    "pydicom/data/test_files/MR_small.dcm 3f27d1c22f1a66e80d7bb7c911e8610fd0bb70325a76746a7adb1c0ddefcf2bb"
    "pydicom/data/test_files/MR_small_jpeg_ls_lossless.dcm b2b69dd2ae854bf7dfada6745709cd5d8a4573ea12387adbbdc56e8be6056206"
    "pydicom/data/test_files/JPEGLSNearLossless_16.dcm dcefcc3f6b95688027ebc1d432d06aee639b6c0fddb2b35f80cd2cf1ec3c4e80"
)

sha() { sha256sum "$1" | cut -d' ' -f1; }

for w in "${wheels[@]}"; do
    read -r file req want <<<"$w"
    path="$cache/wheels/$file"
    if [[ ! -f $path || $(sha "$path") != "$want" ]]; then
        if [[ -z $pip_cmd ]]; then
            echo "error: pip is needed to fetch $req (install python3-pip)" >&2
            exit 1
        fi
        rm -f "$path"
        $pip_cmd download --quiet --no-deps --only-binary=:all: "$req" -d "$cache/wheels"
    fi
    got=$(sha "$path")
    if [[ $got != "$want" ]]; then
        echo "error: $file has sha256 $got, expected $want" >&2
        exit 1
    fi
done

extract() { # wheel member -> $cache/<basename>
    python3 - "$1" "$2" "$3" <<'PY'
import sys, zipfile, shutil, os
wheel, member, dest = sys.argv[1:]
tmp = dest + ".part"
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(tmp, "wb") as out:
    shutil.copyfileobj(src, out)
os.replace(tmp, dest)
PY
}

for m in "${members[@]}"; do
    read -r member want <<<"$m"
    case $member in
        torchxrayvision/*) wheel="$cache/wheels/torchxrayvision-1.5.7-py3-none-any.whl" ;;
        open_clip/*) wheel="$cache/wheels/open_clip_torch-2.32.0-py3-none-any.whl" ;;
        pydicom/*) wheel="$cache/wheels/pydicom-3.0.1-py3-none-any.whl" ;;
        *) wheel="$cache/wheels/pydicom_data-1.0.0-py3-none-any.whl" ;;
    esac
    dest="$cache/$(basename "$member")"
    if [[ ! -f $dest ]] || [[ -n ${want:-} && $(sha "$dest") != "$want" ]]; then
        extract "$wheel" "$member" "$dest"
    fi
    if [[ -n ${want:-} && $(sha "$dest") != "$want" ]]; then
        echo "error: $dest does not match its pinned sha256" >&2
        exit 1
    fi

done
echo "$cache"
