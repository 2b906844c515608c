#!/usr/bin/env bash
# Builds each fuzz target's seed corpus under fuzz/corpus/<target>/ (ignored
# by git) from the files the tests fetch (scripts/fetch-test-data.sh, into
# $CXRLEARN_TEST_DATA) and the committed fixtures (crates/*/tests/fixtures),
# plus the committed regression inputs (fuzz/regressions/<target>/).
#
# Usage: fuzz/seed.sh            (all targets; rebuilds the seed corpora)
#
# Seeds are cut to each target's -max_len (fuzz/run.sh), except the zip
# archives, which are useless without their central directory at the end and
# are only taken whole.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
data=${CXRLEARN_TEST_DATA:-$HOME/.cache/cxrlearn/test-data}
corpus=$here/corpus
fixtures=("$repo"/crates/*/tests/fixtures)

[ -d "$data" ] || { echo "error: no test data at $data (run scripts/fetch-test-data.sh)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "error: python3 is needed to cut the seeds" >&2; exit 1; }

targets=(dicom image_png_jpeg csv_source preset_labels predictions store
         torch_zip pickle safetensors_header benchmark_grid)
for t in "${targets[@]}"; do
    rm -rf "${corpus:?}/$t"
    mkdir -p "$corpus/$t"
    if [ -d "$here/regressions/$t" ]; then
        cp "$here/regressions/$t"/* "$corpus/$t/" 2>/dev/null || true
    fi
done

python3 - "$data" "$corpus" "${fixtures[@]}" <<'PY'
import glob, gzip, hashlib, io, os, struct, sys, tarfile, zipfile, zlib

data, corpus, fixtures = sys.argv[1], sys.argv[2], sys.argv[3:]
KIB = 1024
MAX = {"dicom": 128 * KIB, "image_png_jpeg": 64 * KIB, "csv_source": 16 * KIB,
       "preset_labels": 16 * KIB, "predictions": 8 * KIB, "store": 64 * KIB,
       "torch_zip": 64 * KIB, "pickle": 64 * KIB, "safetensors_header": 64 * KIB,
       "benchmark_grid": 8 * KIB}

def put(target, blob, name=None):
    blob = blob[: MAX[target]]
    name = name or hashlib.sha1(blob).hexdigest()
    with open(os.path.join(corpus, target, name), "wb") as f:
        f.write(blob)

def fixture_files(*exts):
    for root in fixtures:
        for dirpath, _, files in os.walk(root):
            for f in sorted(files):
                if f.endswith(exts):
                    yield os.path.join(dirpath, f)

def csv_head(name, lines=40):
    with gzip.open(os.path.join(data, name), "rb") as f:
        return b"".join(f.readline() for _ in range(lines))

# DICOM: the fetched files and the DICOM files inside the fetched pydicom wheels.
dicoms = []
for p in sorted(glob.glob(os.path.join(data, "*.dcm"))):
    dicoms.append(open(p, "rb").read())
for whl in sorted(glob.glob(os.path.join(data, "wheels", "pydicom*.whl"))):
    with zipfile.ZipFile(whl) as z:
        for info in z.infolist():
            if info.filename.lower().endswith(".dcm") and info.file_size <= 2 * MAX["dicom"]:
                dicoms.append(z.read(info))
for d in dicoms:
    put("dicom", d)

# JPEG: the baseline/extended JPEG streams encapsulated in those DICOM files
# (the fetched data has no standalone JPEG or PNG).
n_jpeg = 0
for d in dicoms:
    start = d.find(b"\xff\xd8\xff")
    while start != -1 and n_jpeg < 40:
        end = d.find(b"\xff\xd9", start)
        if end == -1:
            break
        frame = d[start : end + 2]
        if len(frame) <= MAX["image_png_jpeg"]:
            put("image_png_jpeg", frame)
            n_jpeg += 1
        start = d.find(b"\xff\xd8\xff", end)

# PNG: small grayscale, 16-bit, RGB and RGBA files written here (the color
# types the public datasets ship), one interlaced.
def png(w, h, color, depth, interlace=0):
    chans = {0: 1, 2: 3, 4: 2, 6: 4}[color]
    bpp = chans * depth // 8
    raw = b"".join(b"\x00" + bytes((x * 7 + y * 13) % 256 for x in range(w * bpp)) for y in range(h))
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, interlace)
    if interlace:
        # Adam7 needs its own scanline layout; a 1x1 image is a single pass.
        raw = b"\x00" + bytes(bpp)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
for args in [(16, 16, 0, 8), (8, 8, 0, 16), (8, 4, 2, 8), (4, 4, 6, 8), (4, 4, 4, 8), (1, 1, 0, 8, 1), (3, 5, 2, 16)]:
    put("image_png_jpeg", png(*args))

# Label CSVs: the heads of the fetched publishers' files.
heads = {
    "nih": csv_head("Data_Entry_2017_v2020.csv.gz"),
    "chexpert": csv_head("chexpert_train.csv.gz"),
    "padchest": csv_head("PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz", 20),
    "vindr": csv_head("vinbigdata-train.csv.gz"),
    "siim": csv_head("siim-pneumothorax-train-rle.csv.gz"),
    "nlmcxr": csv_head("nlmcxr_dicom_metadata.csv.gz"),
}
# csv_source: the first byte holds the flags of harness/csv_source.rs.
generic = (b"path,label,a,b,patient,split\n"
           b"img/1.png,1,1,0,p1,train\nimg/2.png,0,-1,,p2,val\nimg/3.png,,0,1,p3,test\n")
for flags in [0, 1, 2, 4 | 1, 8 | 2, 12]:
    put("csv_source", bytes([flags]) + generic)
put("csv_source", bytes([0x80 | 5]) + gzip.compress(generic))
put("csv_source", bytes([0x20]) + generic.replace(b",", b"\t"))
for body in heads.values():
    put("csv_source", b"\x01" + body)

# preset_labels: the first byte picks the preset (harness/preset_labels.rs).
PRESET = {"nih": 0, "chexpert": 1, "mimic": 2, "padchest": 3, "vindr": 4, "vindr-physionet": 5,
          "siim": 6, "ranzcr": 7, "brax": 8, "reflacx": 9, "edema": 10, "phantom": 11,
          "jsrt": 12, "indiana": 13}
for name in ["nih", "chexpert", "padchest", "vindr", "siim"]:
    put("preset_labels", bytes([PRESET[name]]) + heads[name])
put("preset_labels", bytes([PRESET["chexpert"]]) + heads["chexpert"] + b"\x00" + heads["chexpert"][:2000])
with tarfile.open(os.path.join(data, "NLMCXR_reports.tgz")) as tar:
    n = 0
    for m in tar:
        if m.name.endswith(".xml") and n < 6:
            put("preset_labels", bytes([PRESET["indiana"]]) + tar.extractfile(m).read())
            n += 1

# The presets whose publishers' files are not fetched: small files in their
# layouts (the same shapes the preset tests in crates/cxr-data/tests write).
CHEX = ["No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion",
        "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
        "Pleural Other", "Fracture", "Support Devices"]
RANZCR = ["ETT - Abnormal", "ETT - Borderline", "ETT - Normal", "NGT - Abnormal", "NGT - Borderline",
          "NGT - Incompletely Imaged", "NGT - Normal", "CVC - Abnormal", "CVC - Borderline",
          "CVC - Normal", "Swan Ganz Catheter Present"]
REFLACX = ["Atelectasis", "Consolidation", "Enlarged cardiac silhouette", "Groundglass opacity",
           "Lung nodule or mass", "Pleural abnormality", "Pneumothorax", "Pulmonary edema", "Support devices"]
STATES = ["1.0", "0.0", "-1.0", ""]
mimic_l = "subject_id,study_id," + ",".join(CHEX) + "\n"
mimic_m = "dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns\n"
for s in range(4):
    mimic_l += f"1000000{s // 2},5000000{s}," + ",".join(STATES[(k + s) % 4] for k in range(14)) + "\n"
    for v in ["PA", "LATERAL"]:
        mimic_m += f"d{s}{v},1000000{s // 2},5000000{s},CHEST,{v},3000,2500\n"
patients = "subject_id,gender,anchor_age,anchor_year\n10000000,F,52,2150\n10000001,M,,2160\n"
put("preset_labels", bytes([PRESET["mimic"]]) + mimic_l.encode() + b"\0" + mimic_m.encode() + b"\0" + patients.encode())
ranzcr = "StudyInstanceUID," + ",".join(RANZCR) + ",PatientID\n"
for i in range(5):
    ranzcr += f"1.2.826.{i}," + ",".join("1" if k in (i, 9) else "0" for k in range(11)) + f",pat{i % 2}\n"
put("preset_labels", bytes([PRESET["ranzcr"]]) + ranzcr.encode())
brax = "PatientID,PatientSex,PatientAge,AccessionNumber,ViewPosition,Rows,Columns,PngPath," + ",".join(CHEX) + "\n"
for i in range(4):
    brax += f"P{i},M,85 or more,A{i},PA,2000,{100 if i == 3 else 1800},images/P{i}/A{i}/i{i}.png," + ",".join(STATES[(k + i) % 4] for k in range(14)) + "\n"
put("preset_labels", bytes([PRESET["brax"]]) + brax.encode())
others = "Abnormal mediastinal contour,Acute fracture,Enlarged hilum,Hiatal hernia,High lung volume / emphysema,Interstitial lung disease"
reflacx = "id,split,eye_tracking_data_discarded,image,dicom_id,subject_id,image_size_x,image_size_y," + ",".join(REFLACX) + f",{others},Other\n"
for rid, dicom, cert, dev in [("P102R1", "d1", [0, 4, 0, 0, 0, 0, 0, 0], "False"), ("P103R1", "d1", [2, 1, 0, 0, 5, 0, 0, 0], "True")]:
    reflacx += f"{rid},train,False,physionet.org/files/mimic-cxr/2.0.0/files/p10/p100/s200/{dicom}.dcm,{dicom},100,2000,2000," + ",".join(map(str, cert)) + f",{dev},0,0,0,0,0,0,\n"
put("preset_labels", bytes([PRESET["reflacx"]]) + reflacx.encode())
put("preset_labels", bytes([PRESET["edema"]]) + b"subject_id,study_id,edema_severity\n10000980,54577367,0\n10040025,56874940,2\n\0"
    b"dicom_id,subject_id,study_id,ViewPosition\na,10000980,54577367,PA\nb,10000980,54577367,LATERAL\nc,10040025,56874940,AP\n")
phantom_l = "path,patient_id,study_id,site,view,Cardiomegaly,Effusion\n"
phantom_r = "study_id,findings,impression\n"
for p in range(3):
    for k, view in enumerate(["PA", "LATERAL"]):
        phantom_l += f"images/p{p:04}_s01_{'frontal' if k == 0 else 'lateral'}.png,p{p:04},s{p:04}_01,site{p % 2},{view},{p % 2},{int(p % 3 == 0)}\n"
    phantom_r += f"s{p:04}_01,\"Heart size {'enlarged' if p % 2 else 'normal'}, lungs clear.\",No acute disease.\n"
put("preset_labels", bytes([PRESET["phantom"]]) + phantom_l.encode() + b"\0" + phantom_r.encode())
put("preset_labels", bytes([PRESET["jsrt"]])
    + b"JPCLN001.IMG\t5\t15\t53\tmale\t1634\t692\tmalignant\tl.upper lobe\tlung cancer\nJPCLN002.IMG\t2\t30\t?\tfemale\t1000\t900\tbenign\tr.lower\t\tgranuloma\n"
    + b"\0JPCNN001.IMG 48 male non-nodule\n")

# predictions: the committed examples.
for p in sorted(glob.glob(os.path.join(os.path.dirname(corpus), "..", "examples", "predictions-*.csv"))):
    put("predictions", open(p, "rb").read())

# Checkpoints: whole zip archives (torch_zip), the pickles inside them and the
# legacy files (pickle), safetensors files (safetensors_header).
for p in fixture_files(".pt", ".pth.tar", ".ckpt", ".bin"):
    blob = open(p, "rb").read()
    if blob.startswith(b"PK"):
        if len(blob) <= MAX["torch_zip"]:
            put("torch_zip", blob)
        with zipfile.ZipFile(io.BytesIO(blob)) as z:
            for info in z.infolist():
                if info.filename.endswith(".pkl"):
                    put("pickle", z.read(info))
    else:
        put("pickle", blob)
for p in fixture_files(".safetensors"):
    put("safetensors_header", open(p, "rb").read())
PY

for t in "${targets[@]}"; do
    printf '%-20s %5d files\n' "$t" "$(find "$corpus/$t" -type f | wc -l)"
done
