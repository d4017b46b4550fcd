//! The dataset format `vigil eval` reads: `DIR/dataset.json`, written by
//! the model kit's generator (tools/vigil_kit/demo), images beside it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::DatasetError;

use crate::config::AnswerKind;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    pub image: PathBuf,
    pub answer: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    pub id: String,
    /// presence, count, motion, change, fewshot, …
    pub family: String,
    pub question: String,
    pub answer_type: AnswerKind,
    /// The right answer, known by construction.
    pub answer: String,
    /// The clip, oldest first (relative to the dataset directory).
    pub frames: Vec<PathBuf>,
    #[serde(default)]
    pub examples: Vec<Example>,
    /// The Python reference implementation's answer, when it was run.
    #[serde(default)]
    pub reference: Option<String>,
    /// How far the reference's answer led its runner-up (log-probability).
    #[serde(default)]
    pub reference_margin: Option<f64>,
}

impl Item {
    pub fn shots(&self) -> usize {
        self.examples.len()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    items: Vec<Item>,
}

pub struct Dataset {
    pub dir: PathBuf,
    pub items: Vec<Item>,
}

impl Dataset {
    /// Reads `dir/dataset.json` and checks every image it names exists, so
    /// a broken dataset fails before the first model run.
    pub fn load(dir: &Path) -> Result<Dataset, DatasetError> {
        let path = dir.join("dataset.json");
        let text = std::fs::read_to_string(&path).map_err(|source| DatasetError::Read {
            path: path.clone(),
            source,
        })?;
        let file: File = serde_json::from_str(&text).map_err(|source| DatasetError::Parse {
            path: path.clone(),
            source,
        })?;
        if file.version != 1 {
            return Err(DatasetError::Version {
                path,
                version: file.version,
            });
        }
        if file.items.is_empty() {
            return Err(DatasetError::Empty(path));
        }
        for item in &file.items {
            if item.frames.is_empty() {
                return Err(DatasetError::NoFrames {
                    path,
                    item: item.id.clone(),
                });
            }
            let images = item
                .frames
                .iter()
                .chain(item.examples.iter().map(|e| &e.image));
            for image in images {
                if !dir.join(image).is_file() {
                    return Err(DatasetError::MissingImage {
                        path,
                        item: item.id.clone(),
                        image: dir.join(image),
                    });
                }
            }
        }
        Ok(Dataset {
            dir: dir.to_path_buf(),
            items: file.items,
        })
    }
}
