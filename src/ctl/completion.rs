//! `invpnctl completion bash|zsh`: completion scripts made from the same
//! table as the help text ([`super::commands`]), so they cannot drift.

use super::commands::{self, CommandDef, Operands, OptDef, COMMANDS, GLOBAL};
use super::CtlError;

/// What the value of an option is, for completion.
enum Value {
    Dir,
    File,
    Words(&'static str),
    Free,
}

fn value_of(o: &OptDef) -> Option<Value> {
    let arg = o.arg?;
    Some(if !o.values.is_empty() {
        Value::Words(o.values)
    } else if arg == "DIR" {
        Value::Dir
    } else if matches!(arg, "FILE" | "PATH" | "CONF" | "PREFIX") {
        Value::File
    } else {
        Value::Free
    })
}

fn spellings(o: &OptDef) -> Vec<String> {
    let mut v = vec![format!("--{}", o.long)];
    if !o.short.is_empty() {
        v.push(format!("-{}", o.short));
    }
    v
}

/// Every option that takes a value, once per spelling, with its kind.
fn valued() -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = Vec::new();
    for o in GLOBAL.iter().chain(COMMANDS.iter().flat_map(|c| c.options)) {
        for sp in spellings(o) {
            if let Some(v) = value_of(o) {
                if !out.iter().any(|(s, _)| *s == sp) {
                    out.push((sp, v));
                }
            }
        }
    }
    out
}

/// The case patterns (`--a|--b`) of the options whose value is of a kind.
fn pattern(all: &[(String, Value)], pick: impl Fn(&Value) -> bool) -> String {
    all.iter().filter(|(_, v)| pick(v)).map(|(s, _)| s.as_str()).collect::<Vec<_>>().join("|")
}

/// The first words of the commands (`status`, ..., `cert`, `help`).
fn top_words() -> Vec<&'static str> {
    let mut w: Vec<&str> = Vec::new();
    for c in COMMANDS {
        let first = c.name.split(' ').next().unwrap_or(c.name);
        if !w.contains(&first) {
            w.push(first);
        }
    }
    w
}

fn global_value_pattern() -> String {
    GLOBAL.iter().filter(|o| o.arg.is_some()).flat_map(spellings).collect::<Vec<_>>().join("|")
}

fn option_words(c: &CommandDef) -> String {
    GLOBAL.iter().chain(c.options).flat_map(spellings).collect::<Vec<_>>().join(" ")
}

fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The completion script for `shell` (bash or zsh).
pub fn script(shell: &str) -> Result<String, CtlError> {
    match shell {
        "bash" => Ok(bash()),
        "zsh" => Ok(zsh()),
        _ => Err(CtlError::Usage(format!("completion {shell:?}: expected bash or zsh"))),
    }
}

/// The part both shells share: walk the words before the cursor, skipping
/// options and global options' values, to find the command.
fn find_command(first: usize, last: &str, word: &str) -> String {
    let groups: Vec<String> =
        commands::groups().iter().map(|g| format!("\"$cmd\" == {g}")).collect();
    format!(
        "    for ((i = {first}; i < {last}; i++)); do\n\
         \x20       w=\"{word}\"\n\
         \x20       case \"$w\" in\n\
         \x20           {gv}) ((i++)); continue ;;\n\
         \x20           -*) continue ;;\n\
         \x20       esac\n\
         \x20       if [[ -z \"$cmd\" ]]; then cmd=\"$w\"\n\
         \x20       elif [[ {g} ]]; then cmd=\"$cmd $w\"; break\n\
         \x20       else break\n\
         \x20       fi\n\
         \x20   done\n",
        gv = global_value_pattern(),
        g = groups.join(" || "),
    )
}

fn bash() -> String {
    let v = valued();
    let mut s = String::from(
        "# bash completion for invpnctl (made by `invpnctl completion bash`)\n\
         _invpnctl() {\n\
         \x20   local cur=\"${COMP_WORDS[COMP_CWORD]}\" prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n\
         \x20   local i w cmd=\"\"\n\
         \x20   COMPREPLY=()\n\
         \x20   case \"$prev\" in\n",
    );
    let files = pattern(&v, |k| matches!(k, Value::File));
    let dirs = pattern(&v, |k| matches!(k, Value::Dir));
    let free = pattern(&v, |k| matches!(k, Value::Free));
    s.push_str(&format!("        {files}) COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n"));
    s.push_str(&format!("        {dirs}) COMPREPLY=($(compgen -d -- \"$cur\")); return ;;\n"));
    for (sp, k) in &v {
        if let Value::Words(w) = k {
            s.push_str(&format!(
                "        {sp}) COMPREPLY=($(compgen -W \"{w}\" -- \"$cur\")); return ;;\n"
            ));
        }
    }
    s.push_str(&format!("        {free}) return ;;\n    esac\n"));
    s.push_str(&find_command(1, "COMP_CWORD", "${COMP_WORDS[i]}"));
    s.push_str("    local words=\"\" opts=\"\" files=\"\"\n    case \"$cmd\" in\n");
    let globals: Vec<String> = GLOBAL.iter().flat_map(spellings).collect();
    s.push_str(&format!(
        "        \"\") words=\"{}\" opts=\"{}\" ;;\n",
        top_words().join(" "),
        globals.join(" ")
    ));
    for g in commands::groups() {
        let acts: Vec<&str> = commands::actions(g)
            .map(|c| c.name.split_once(' ').map_or(c.name, |(_, a)| a))
            .collect();
        s.push_str(&format!("        {g}) words=\"{}\" ;;\n", acts.join(" ")));
    }
    for c in COMMANDS {
        let operands = match c.operands {
            Operands::None => String::new(),
            Operands::File => " files=1".to_string(),
            Operands::Word(w) => format!(" words=\"{}\"", w.join(" ")),
            Operands::Command => format!(" words=\"{}\"", top_words().join(" ")),
        };
        s.push_str(&format!("        \"{}\") opts=\"{}\"{operands} ;;\n", c.name, option_words(c)));
    }
    s.push_str(
        "    esac\n\
         \x20   if [[ \"$cur\" == -* || ( -z \"$words\" && -z \"$files\" ) ]]; then\n\
         \x20       COMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n\
         \x20   elif [[ -n \"$files\" ]]; then\n\
         \x20       COMPREPLY=($(compgen -f -- \"$cur\"))\n\
         \x20   else\n\
         \x20       COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n\
         \x20   fi\n\
         }\n\
         complete -o filenames -F _invpnctl invpnctl\n",
    );
    s
}

fn describe_list(name: &str, items: &[(String, &str)]) -> String {
    let specs: Vec<String> =
        items.iter().map(|(w, h)| sq(&format!("{}:{h}", w.replace(':', "\\:")))).collect();
    format!("local -a {name}=({})", specs.join(" "))
}

fn zsh() -> String {
    let v = valued();
    let mut s = String::from(
        "#compdef invpnctl\n\
         # zsh completion for invpnctl (made by `invpnctl completion zsh`)\n\
         _invpnctl() {\n\
         \x20   local i w cmd=\"\" cur=\"${words[CURRENT]}\" prev=\"${words[CURRENT-1]}\"\n\
         \x20   case \"$prev\" in\n",
    );
    s.push_str(&format!(
        "        {}) _files; return ;;\n",
        pattern(&v, |k| matches!(k, Value::File))
    ));
    s.push_str(&format!(
        "        {}) _files -/; return ;;\n",
        pattern(&v, |k| matches!(k, Value::Dir))
    ));
    for (sp, k) in &v {
        if let Value::Words(w) = k {
            s.push_str(&format!("        {sp}) compadd -- {w}; return ;;\n"));
        }
    }
    s.push_str(&format!(
        "        {}) _message 'a value'; return ;;\n    esac\n",
        pattern(&v, |k| matches!(k, Value::Free))
    ));
    s.push_str(&find_command(2, "CURRENT", "${words[i]}"));
    let top: Vec<(String, &str)> = top_words()
        .into_iter()
        .map(|w| {
            let c = COMMANDS.iter().find(|c| c.name.starts_with(w));
            let h = match c {
                Some(c) if c.name == w => c.summary,
                _ => "certificates",
            };
            (w.to_string(), h)
        })
        .collect();
    s.push_str("    case \"$cmd\" in\n");
    s.push_str(&format!(
        "        \"\") {}; _describe command cmds ;;\n",
        describe_list("cmds", &top)
    ));
    for g in commands::groups() {
        let acts: Vec<(String, &str)> = commands::actions(g)
            .map(|c| (c.name.split_once(' ').map_or(c.name, |(_, a)| a).to_string(), c.summary))
            .collect();
        s.push_str(&format!(
            "        {g}) {}; _describe action acts ;;\n",
            describe_list("acts", &acts)
        ));
    }
    for c in COMMANDS {
        let opts: Vec<(String, &str)> = GLOBAL
            .iter()
            .chain(c.options)
            .flat_map(|o| spellings(o).into_iter().map(move |sp| (sp, o.help)))
            .collect();
        let operands = match c.operands {
            Operands::None => String::new(),
            Operands::File => "_files".to_string(),
            Operands::Word(w) => format!("compadd -- {}", w.join(" ")),
            Operands::Command => describe_list("cmds", &top) + "; _describe command cmds",
        };
        let body = if operands.is_empty() {
            "_describe option opts".to_string()
        } else {
            format!("if [[ \"$cur\" == -* ]]; then _describe option opts; else {operands}; fi")
        };
        s.push_str(&format!(
            "        \"{}\") {}; {body} ;;\n",
            c.name,
            describe_list("opts", &opts)
        ));
    }
    s.push_str(
        "    esac\n\
         }\n\
         if [[ \"${funcstack[1]}\" == _invpnctl ]]; then _invpnctl \"$@\"; else compdef _invpnctl invpnctl; fi\n",
    );
    s
}
