//! The languages of error messages: Korean and English, one Fluent catalogue per language under
//! `locales/`, compiled in. `Accept-Language` picks one per request (default English).

use fluent_templates::{LanguageIdentifier, Loader};

fluent_templates::static_loader! {
    static LOCALES = {
        locales: "./locales",
        fallback_language: "en",
    };
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lang {
    #[default]
    En,
    Ko,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Ko];

    /// The tag for `Content-Language`.
    pub fn tag(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Ko => "ko",
        }
    }

    fn id(self) -> LanguageIdentifier {
        match self {
            Self::En => fluent_templates::langid!("en"),
            Self::Ko => fluent_templates::langid!("ko"),
        }
    }

    /// The language `Accept-Language` prefers most (quality values honoured; `q=0` refuses),
    /// matching by primary subtag (`ko-KR` is `ko`); `*` or nothing we speak: English.
    pub fn negotiate(accept_language: Option<&str>) -> Self {
        let Some(header) = accept_language else {
            return Self::default();
        };
        accept_language::parse_with_quality(header)
            .into_iter()
            .filter(|(_, q)| *q > 0.0)
            .find_map(|(tag, _)| {
                let primary = tag.split('-').next().unwrap_or_default();
                match primary.to_ascii_lowercase().as_str() {
                    "ko" => Some(Self::Ko),
                    "en" | "*" => Some(Self::En),
                    _ => None,
                }
            })
            .unwrap_or_default()
    }
}

tokio::task_local! {
    static REQUEST_LANG: Lang;
}

/// Run `f` with `lang` as the current request's language.
pub async fn scope<F: std::future::Future>(lang: Lang, f: F) -> F::Output {
    REQUEST_LANG.scope(lang, f).await
}

/// The current request's language (English outside a request).
pub fn current() -> Lang {
    REQUEST_LANG.try_with(|l| *l).unwrap_or_default()
}

/// The message `id` (an error code, or `CODE-variant`) in `lang`, if its catalogue has it.
pub fn try_message(id: &str, lang: Lang) -> Option<String> {
    LOCALES.try_lookup(&lang.id(), id)
}

/// The message `id` in `lang`; else the code's own message; else English; never empty.
pub fn message(id: &str, lang: Lang) -> String {
    let code = id.split('-').next().unwrap_or(id);
    try_message(id, lang)
        .or_else(|| try_message(code, lang))
        .or_else(|| try_message(id, Lang::En))
        .or_else(|| try_message(code, Lang::En))
        .unwrap_or_else(|| code.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_by_quality_and_primary_subtag() {
        for (header, lang) in [
            ("ko-KR,ko;q=0.9", Lang::Ko),
            ("ko", Lang::Ko),
            ("en-US,en;q=0.9,ko;q=0.8", Lang::En),
            ("ko;q=0.5, en;q=0.8", Lang::En),
            ("en;q=0.1, ko;q=0.9", Lang::Ko),
            ("fr-FR, ko;q=0.3", Lang::Ko),
            ("fr", Lang::En),
            ("ko;q=0, en;q=0.1", Lang::En),
            ("*", Lang::En),
            ("", Lang::En),
            ("KO-kr", Lang::Ko),
        ] {
            assert_eq!(Lang::negotiate(Some(header)), lang, "{header}");
        }
        assert_eq!(Lang::negotiate(None), Lang::En);
    }

    #[test]
    fn both_catalogues_have_the_same_messages() {
        let ids = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| !l.starts_with('#') && !l.starts_with(' '))
                .filter_map(|l| l.split_once(" = ").map(|(id, _)| id.trim().to_owned()))
                .collect()
        };
        let en = ids(include_str!("../locales/en/errors.ftl"));
        let ko = ids(include_str!("../locales/ko/errors.ftl"));
        assert!(en.len() >= 17, "{en:?}");
        assert_eq!(en, ko, "the catalogues list different messages");
        for id in &en {
            for lang in Lang::ALL {
                assert!(try_message(id, lang).is_some(), "{id} in {lang:?}");
            }
        }
        assert_ne!(
            try_message("INTERNAL", Lang::Ko),
            try_message("INTERNAL", Lang::En)
        );
    }
}
