//! The drill of a command target: its output restored as one file `<target>.out` into a
//! temporary folder, size and SHA-256 checked, then the target's `command` checks (the
//! files kind's rehearsal does all of it).

use crate::{
    drill::rehearsal::{Chosen, Drill, Stop},
    kinds::files::drill::FilesRehearsal,
};

pub async fn rehearse(drill: &mut Drill, (info, manifest): &Chosen) -> Result<(), Stop> {
    let Some(cm) = manifest.command.as_ref() else {
        return Err(drill.missing_section());
    };
    let mut r = FilesRehearsal::of_command(
        drill.engine.repo.clone(),
        &info.id,
        &drill.name,
        cm,
        drill.rules.clone(),
    );
    drill.rehearse(&mut r).await
}
