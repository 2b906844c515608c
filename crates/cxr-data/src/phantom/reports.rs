//! Radiology reports written from the true findings: a FINDINGS section (one
//! sentence or so per organ system, shuffled) and an IMPRESSION. Wording
//! varies; there are negations, hedges, laterality and severity words, and
//! noise: subtle findings are sometimes missed, absent ones are sometimes
//! hedged about, and irrelevant sentences appear. Left and right are the
//! patient's, consistent with the image.

use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::findings::{AtelectasisKind, Findings, Lesion, Side, TipPosition};

fn pick<'a>(rng: &mut ChaCha8Rng, options: &[&'a str]) -> &'a str {
    options[rng.random_range(0..options.len())]
}

fn cap(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn size_word(v: f32) -> &'static str {
    if v < 0.33 {
        "small"
    } else if v < 0.66 {
        "moderate"
    } else {
        "large"
    }
}

fn side_lung(side: Side) -> &'static str {
    side.word()
}

/// What the radiologist saw, after misses.
struct Seen {
    effusion: bool,
    pneumothorax: bool,
    consolidation: bool,
    nodule: bool,
    mass: bool,
    atelectasis: bool,
    edema: bool,
    cardiomegaly: bool,
}

fn missed(rng: &mut ChaCha8Rng, subtlety: f32) -> bool {
    rng.random_bool(f64::from(0.03 + 0.25 * subtlety.clamp(0.0, 1.0)))
}

fn lesion_place(l: &Lesion) -> String {
    format!("{} {} zone", side_lung(l.side), l.zone())
}

/// Writes `(findings, impression)` for one study. `prior` is the patient's
/// previous study, for comparison statements; `portable` for AP caveats.
pub fn write(
    f: &Findings,
    prior: Option<&Findings>,
    portable: bool,
    rng: &mut ChaCha8Rng,
) -> (String, String) {
    let seen = Seen {
        effusion: f
            .effusion
            .is_some_and(|e| !missed(rng, 1.0 - e.volume * 2.0)),
        pneumothorax: f
            .pneumothorax
            .is_some_and(|p| !missed(rng, 0.9 - p.size * 3.0)),
        consolidation: f
            .consolidation
            .is_some_and(|c| !missed(rng, 0.8 - c.density)),
        nodule: f.nodule.is_some_and(|n| !missed(rng, 1.0 - n.density)),
        mass: f.mass.is_some_and(|_| !missed(rng, 0.0)),
        atelectasis: f
            .atelectasis
            .is_some_and(|a| !missed(rng, 0.9 - a.severity)),
        edema: f.edema_grade > 0 && !missed(rng, if f.edema_grade == 1 { 0.6 } else { 0.0 }),
        cardiomegaly: f.cardiomegaly && !missed(rng, (0.56 - f.ctr) * 8.0),
    };
    let mut body: Vec<String> = Vec::new();
    let mut imp: Vec<String> = Vec::new();

    // Lines and tubes.
    if let Some(p) = f.ett {
        body.push(match p {
            TipPosition::Normal => pick(
                rng,
                &[
                    "Endotracheal tube in standard position above the carina.",
                    "The endotracheal tube tip projects 5 cm above the carina.",
                    "ET tube terminates in satisfactory position.",
                ],
            )
            .into(),
            TipPosition::Borderline => {
                imp.push(
                    "Endotracheal tube position is borderline; consider repositioning.".into(),
                );
                pick(rng, &[
                    "The endotracheal tube tip is borderline in position relative to the carina.",
                    "ET tube tip is suboptimally positioned and could be adjusted by 1 to 2 cm.",
                ]).into()
            }
            TipPosition::Abnormal => {
                imp.insert(
                    0,
                    "Endotracheal tube in the right mainstem bronchus; recommend retraction."
                        .into(),
                );
                "The endotracheal tube extends beyond the carina into the right mainstem bronchus."
                    .into()
            }
        });
    }
    if let Some(p) = f.ngt {
        body.push(match p {
            TipPosition::Normal => pick(rng, &[
                "Nasogastric tube courses below the diaphragm with the tip in the stomach.",
                "Enteric tube tip projects over the stomach.",
            ]).into(),
            TipPosition::Borderline => {
                imp.push("Nasogastric tube tip near the gastroesophageal junction; advance by several centimetres.".into());
                "The nasogastric tube tip is at the gastroesophageal junction with the side port above it.".into()
            }
            TipPosition::Abnormal => {
                imp.insert(0, "Malpositioned nasogastric tube in the right lower lobe bronchus.".into());
                "The nasogastric tube courses into the right lower lobe bronchus.".into()
            }
        });
    }
    if let Some(p) = f.cvc {
        body.push(match p {
            TipPosition::Normal => pick(rng, &[
                "Right internal jugular central venous catheter terminates at the cavoatrial junction.",
                "Right IJ line with tip in the lower SVC.",
            ]).into(),
            TipPosition::Borderline => "Right internal jugular catheter tip projects over the upper SVC.".into(),
            TipPosition::Abnormal => {
                imp.push("Central venous catheter tip in the right atrium; consider retraction.".into());
                "The right internal jugular catheter extends deep into the right atrium.".into()
            }
        });
    }
    if f.ecg_leads && rng.random_bool(0.3) {
        body.push("Overlying monitoring leads.".into());
    }

    // Lungs.
    let mut lung_abn = false;
    if seen.consolidation
        && let Some(c) = f.consolidation
    {
        lung_abn = true;
        if c.density < 0.5 {
            body.push(format!(
                "{} opacity in the {}, {}.",
                cap(pick(rng, &["subtle", "faint", "hazy"])),
                lesion_place(&c),
                pick(
                    rng,
                    &[
                        "cannot exclude early pneumonia",
                        "possibly atelectasis or early infection",
                        "which may represent pneumonia"
                    ]
                )
            ));
            imp.push(format!(
                "Possible {} {} pneumonia.",
                side_lung(c.side),
                c.zone()
            ));
        } else {
            body.push(format!(
                "{} {} in the {}.",
                cap(pick(rng, &["focal", "dense", "patchy", "confluent"])),
                pick(
                    rng,
                    &[
                        "consolidation",
                        "airspace opacity",
                        "airspace consolidation"
                    ]
                ),
                lesion_place(&c)
            ));
            imp.push(format!(
                "{} {} consolidation, {}.",
                cap(side_lung(c.side)),
                c.zone(),
                pick(
                    rng,
                    &[
                        "concerning for pneumonia",
                        "likely pneumonia",
                        "compatible with pneumonia in the appropriate clinical setting"
                    ]
                )
            ));
        }
    }
    for (seen_it, les, kind) in [
        (seen.nodule, f.nodule, "nodule"),
        (seen.mass, f.mass, "mass"),
    ] {
        if let (true, Some(l)) = (seen_it, les) {
            lung_abn = true;
            let stable = prior.is_some() && rng.random_bool(0.6);
            if kind == "nodule" && l.density < 0.65 {
                body.push(format!(
                    "Possible {:.1} cm nodular opacity in the {}.",
                    l.diameter_cm(),
                    lesion_place(&l)
                ));
                imp.push("Possible pulmonary nodule; CT could be considered.".into());
            } else {
                body.push(format!(
                    "{}{:.1} cm {}{} in the {}.",
                    if stable { "Stable " } else { "" },
                    l.diameter_cm(),
                    if kind == "mass" {
                        pick(rng, &["lobulated ", "", "spiculated "])
                    } else {
                        ""
                    },
                    kind,
                    lesion_place(&l)
                ));
                imp.push(if kind == "mass" {
                    format!(
                        "{} lung mass, concerning for malignancy.",
                        cap(side_lung(l.side))
                    )
                } else {
                    format!(
                        "{} pulmonary nodule{}.",
                        cap(side_lung(l.side)),
                        if stable { ", stable" } else { "" }
                    )
                });
            }
        }
    }
    if seen.atelectasis
        && let Some(a) = f.atelectasis
    {
        lung_abn = true;
        match a.kind {
            AtelectasisKind::Plate => body.push(format!(
                "{} atelectasis at the {} lung base.",
                cap(pick(rng, &["plate-like", "linear", "subsegmental", "mild"])),
                side_lung(a.side)
            )),
            AtelectasisKind::Lobar => {
                body.push(format!(
                    "{} lower lobe collapse with elevation of the {} hemidiaphragm.",
                    cap(side_lung(a.side)),
                    side_lung(a.side)
                ));
                imp.push(format!(
                    "{} lower lobe atelectasis.",
                    cap(side_lung(a.side))
                ));
            }
        }
    }
    if seen.edema {
        lung_abn = true;
        let (b, i) = match f.edema_grade {
            1 => (
                "Mild pulmonary vascular congestion.",
                "Mild vascular congestion.",
            ),
            2 => (
                "Interstitial edema with septal lines and peribronchial cuffing.",
                "Moderate interstitial pulmonary edema.",
            ),
            _ => (
                "Bilateral perihilar airspace opacities consistent with alveolar edema.",
                "Severe pulmonary edema.",
            ),
        };
        body.push(b.into());
        imp.push(i.into());
    }
    if !lung_abn {
        body.push(
            pick(
                rng,
                &[
                    "The lungs are clear.",
                    "Lungs are well expanded and clear.",
                    "No focal consolidation.",
                    "Clear lungs.",
                ],
            )
            .into(),
        );
    }

    // Pleura.
    let mut pleura: Vec<String> = Vec::new();
    if seen.effusion
        && let Some(e) = f.effusion
    {
        let w = size_word(e.volume);
        if e.volume < 0.2 && rng.random_bool(0.5) {
            pleura.push(format!(
                "Blunting of the {} costophrenic angle{}, likely a small effusion.",
                side_lung(e.side),
                if e.side == Side::Bilateral { "s" } else { "" }
            ));
        } else {
            pleura.push(format!(
                "{} {} pleural effusion{}.",
                cap(w),
                side_lung(e.side),
                if e.side == Side::Bilateral { "s" } else { "" }
            ));
        }
        imp.push(format!(
            "{} {} pleural effusion{}.",
            cap(w),
            side_lung(e.side),
            if e.side == Side::Bilateral { "s" } else { "" }
        ));
    }
    if seen.pneumothorax
        && let Some(p) = f.pneumothorax
    {
        let w = size_word((p.size - 0.08) / 0.37);
        pleura.push(format!(
            "{} {} {}pneumothorax.",
            cap(w),
            side_lung(p.side),
            pick(rng, &["", "apical ", "apicolateral "])
        ));
        imp.insert(0, format!("{} {} pneumothorax.", cap(w), side_lung(p.side)));
    }
    let hedge = rng.random_bool(0.03);
    match (seen.effusion, seen.pneumothorax) {
        (false, false) if hedge => pleura.push("Cannot exclude a tiny pleural effusion.".into()),
        (false, false) => pleura.push(
            pick(
                rng,
                &[
                    "No pleural effusion or pneumothorax.",
                    "No effusion or pneumothorax.",
                    "There is no pneumothorax or pleural effusion.",
                ],
            )
            .into(),
        ),
        (true, false) => pleura.push("No pneumothorax.".into()),
        (false, true) => pleura.push("No pleural effusion.".into()),
        _ => {}
    }
    body.extend(pleura);

    // Heart and mediastinum.
    if seen.cardiomegaly {
        let w = if f.ctr < 0.56 {
            "mild"
        } else if f.ctr < 0.62 {
            "moderate"
        } else {
            "severe"
        };
        body.push(
            pick(
                rng,
                &[
                    format!("{} enlargement of the cardiac silhouette.", cap(w)).as_str(),
                    format!("The heart is {w}ly enlarged.").as_str(),
                    format!("{} cardiomegaly.", cap(w)).as_str(),
                ],
            )
            .to_string(),
        );
        imp.push(format!("{} cardiomegaly.", cap(w)));
    } else if portable && rng.random_bool(0.3) {
        body.push("Heart size is difficult to assess on this AP portable view.".into());
    } else {
        body.push(
            pick(
                rng,
                &[
                    "Heart size is normal.",
                    "The cardiomediastinal silhouette is within normal limits.",
                    "Normal heart size and mediastinal contours.",
                ],
            )
            .into(),
        );
    }

    // Distractors.
    if rng.random_bool(0.25) {
        body.push(
            pick(
                rng,
                &[
                    "No acute osseous abnormality.",
                    "Degenerative changes of the thoracic spine.",
                    "Surgical clips in the right upper quadrant.",
                    "Visualized osseous structures are intact.",
                    "Calcified aortic knob.",
                ],
            )
            .into(),
        );
    }
    body.shuffle(rng);

    if let Some(p) = prior {
        if p.effusion.is_some() && f.effusion.is_none() && rng.random_bool(0.6) {
            imp.push("Interval resolution of the pleural effusion.".into());
        }
        if p.pneumothorax.is_some() && f.pneumothorax.is_none() && rng.random_bool(0.6) {
            imp.push("Resolved pneumothorax.".into());
        }
    }
    imp.truncate(3);
    if imp.is_empty() {
        imp.push(
            pick(
                rng,
                &[
                    "No acute cardiopulmonary process.",
                    "No acute cardiopulmonary abnormality.",
                    "No acute intrathoracic process.",
                    "Normal chest radiograph.",
                ],
            )
            .into(),
        );
    }
    if let Some(p) = prior
        && rng.random_bool(0.4)
    {
        let same = p.labels() == f.labels();
        body.insert(
            0,
            if same {
                "Compared with the prior study, no significant interval change.".into()
            } else {
                "Compared with the prior study.".into()
            },
        );
    }
    (body.join(" "), imp.join(" "))
}
