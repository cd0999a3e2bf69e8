"""Sites, for admins: onboard a hospital from its own films (training.adapt in the background),
see before/after on its held-out films, and serve any kept model (the shipped one, an adapted
one). Every action here re-checks, inside itself, that its admin still is one."""

from datetime import UTC, datetime
from pathlib import Path

import streamlit as st

from model.bounded_zip import ZipLimits
from model.errors import ModelLoadError
from model.job_status import DONE, RUNNING
from model.limits import DEFAULT_LIMITS
from model.run_dir import RunFileError, read_metadata
from model.shift import MIN_FILMS, ShiftError
from model.site_names import MAX_SITE_NAME_CHARS, SiteNameError, site_name
from pipeline import adapt_jobs as jobs
from pipeline.local_validation import ValidationFailed
from records.accounts import AccountError
from records.audit import AuditUnavailable
from records.model_activations import (
    SERVER_MODE,
    ActivationError,
    Served,
    activate,
    serving,
    switches,
)
from records.settings import load_settings
from records.site_acceptances import accepted_validation
from webapp import local_validation as validating
from webapp import site_onboarding as sites
from webapp import site_shift
from webapp.charts import confusion_matrix_figure
from webapp.kept_models import check_servable, kept_models
from webapp.plain_text import plain
from webapp.resources import (
    app_database,
    configured_run_dir,
    load_embedded,
    load_shift_check,
    model_url,
    run_dir,
)
from webapp.session import PAUSED, require_admin

OUTCOME = "sites_outcome"
CHART_CONFIG = {"displaylogo": False}
ZIP_SOURCE, FEEDBACK_SOURCE = "A .zip in label folders", "Radiologist-confirmed films"
SHIFT_ZIP, SHIFT_RECENT = "A .zip of films", "The last analysed films"

actor = require_admin()
database, settings = app_database(), load_settings()
server_url = model_url()


def served_now() -> Served:
    path = run_dir()
    try:
        return Served(path, read_metadata(path).version)
    except RunFileError as error:
        return Served(path, f"unreadable ({error})")


def switch(target: Path) -> None:
    """An audited switch to ``target`` (a button callback, run before the page: what it knows
    of the account and the model it reads now), its outcome kept for the page."""
    try:
        if not server_url:
            check_servable(target)
        done = activate(database, actor, target, configured_run_dir(), model_url=server_url)
    except (ActivationError, AccountError) as error:
        st.session_state[OUTCOME] = (False, str(error))
    except AuditUnavailable:
        st.session_state[OUTCOME] = (False, PAUSED)
    else:
        st.session_state[OUTCOME] = (True, f"Now serving {done.served.version} (was "
                                           f"{done.previous.version}).")


st.title("Sites")
st.caption("Onboard a hospital: its own labelled films adapt the served model's head "
           "(python -m training.adapt); a part of them is held out to show before and after. "
           "Activating switches the model every page uses; each switch is audited.")
if OUTCOME in st.session_state:
    ok, message = st.session_state.pop(OUTCOME)
    (st.success if ok else st.error)(plain(message))

current = served_now()
st.subheader("Served model")
st.markdown(f"**{plain(current.version)}**  \n`{plain(str(current.run_dir))}`")
if server_url:
    st.info(SERVER_MODE, icon=":material/dns:")
else:
    unsigned = serving(database, configured_run_dir()).unsigned
    if unsigned:
        st.error(f"Audit rows {', '.join(map(str, unsigned))} switch the model but are not signed "
                 "with the audit key (written into the database by something other than this "
                 f"app): they are ignored, and {plain(current.version)} is served, the newest "
                 "signed switch (or the settings' model). Run python -m records.audit verify "
                 "and see docs/AUDIT.md.", icon=":material/gpp_bad:")
history = switches(database)
if history:
    st.dataframe([{"When (UTC)": item.at, "By": item.username, "Served": item.served.version,
                   "Replaced": item.previous.version} for item in reversed(history)],
                 hide_index=True, key="switches")
kept = {str(model.run_dir): model for model in kept_models(configured_run_dir(),
                                                           settings.sites_dir)}
choose, serve = st.columns([3, 1], vertical_alignment="bottom")
chosen = choose.selectbox("Kept models", list(kept), key="kept_model",
                          format_func=lambda key: f"{kept[key].version} ({Path(key).name})",
                          help="The shipped model and every adapted run in the sites folder.")
serve.button("Serve this model", icon=":material/published_with_changes:", key="serve_kept",
             on_click=switch, args=(Path(chosen),) if chosen else (current.run_dir,),
             disabled=bool(server_url) or chosen is None
             or Path(chosen).resolve() == current.run_dir.resolve())

st.subheader("Is this site like the training films?")
with st.container(border=True):
    st.caption(f"Compares a batch of unlabelled films (at least {MIN_FILMS}) with the films the "
               "served model was trained on, from the model's features: a shift shows in a "
               "batch, not in one film. Not flagged is no validation: validate on local "
               "labelled films before relying on the model.")
    shift_source = st.radio("Films to check", (SHIFT_ZIP, SHIFT_RECENT), key="shift_source",
                            horizontal=True)
    if shift_source == SHIFT_ZIP:
        shift_upload = st.file_uploader("Films (.zip, any folders)", type=["zip"],
                                        key="shift_zip")
    else:
        shift_count = st.number_input("How many of the last analysed films", key="shift_count",
                                      min_value=MIN_FILMS, value=200, step=50)
    if server_url:
        st.info(site_shift.SERVER_MODE, icon=":material/dns:")
    if st.button("Check these films", icon=":material/query_stats:", key="shift_check",
                 disabled=bool(server_url)):
        try:
            if shift_source == SHIFT_ZIP and shift_upload is None:
                raise ShiftError("Choose a .zip of the site's films first.")
            check = load_shift_check(current.run_dir)
            with st.spinner("Checking the films…"):
                if shift_source == SHIFT_RECENT:
                    kept_versions = site_shift.comparable_versions(check, list(kept.values()))
                    verdict = site_shift.check_recent(database, check, kept_versions,
                                                      int(shift_count))
                else:
                    verdict, unused = site_shift.check_zip(
                        load_embedded(current.run_dir), check, shift_upload.name,
                        shift_upload.getvalue(),
                        ZipLimits.from_settings(settings, DEFAULT_LIMITS.max_upload_bytes))
                    if unused:
                        st.caption(f"{unused} files or members were not used (not a readable "
                                   "chest film, or refused by the model's checks).")
        except (ShiftError, RunFileError, ModelLoadError) as error:
            st.error(plain(str(error)), icon=":material/block:")
        else:
            score, threshold = st.columns(2)
            score.metric("Shift score", f"{verdict.score:.2f}",
                         help="How well a classifier tells these films from the training "
                              "films: 0.5 not at all, 1 always.")
            threshold.metric("Threshold", f"{verdict.threshold:.2f}",
                             help="Batches of the training sources' own held-out films of "
                                  "this size score below it.")
            (st.warning if verdict.shifted else st.success)(verdict.message)

st.subheader("Onboard a site")
running = jobs.running_job(settings.sites_dir)
with st.container(border=True):
    name = st.text_input("Site name", key="site_name", placeholder="st-mary")
    source = st.radio("Films", (ZIP_SOURCE, FEEDBACK_SOURCE),
                      key="site_source", horizontal=True)
    unavailable = sites.confirmed_films_available(database)
    upload = None
    if source == ZIP_SOURCE:
        upload = st.file_uploader(
            "Site films (.zip)", type=["zip"], key="site_zip",
            help="Folders named by label (NORMAL/, PNEUMONIA/, COVID19/ ...); NORMAL alone is "
                 "enough. At least 20 films; a part is held out to check the result.")
    elif unavailable:
        st.warning(unavailable, icon=":material/block:")
    start = st.button("Start adaptation", icon=":material/play_arrow:", key="start_adaptation",
                      disabled=running is not None or (source != ZIP_SOURCE
                                                       and unavailable is not None),
                      help="One adaptation at a time." if running else None)

if start:
    if source == ZIP_SOURCE:
        limits = ZipLimits.from_settings(settings, DEFAULT_LIMITS.max_upload_bytes)

        def gather(folder):
            if upload is None:
                raise sites.SiteInputError("Choose a .zip of the site's films first.")
            return sites.films_from_zip(upload.name, upload.getvalue(), limits, folder)
    else:
        def gather(folder):
            return sites.films_from_feedback(database, settings, folder)
    try:
        job, films = sites.start_from(database, settings, actor, name, current, gather)
    except (sites.SiteInputError, AccountError) as error:
        st.error(plain(str(error)))
    except AuditUnavailable:
        st.error(PAUSED, icon=":material/error:")
    else:
        st.success(f"Started {job.site}: {sites.label_counts_text(films.counts)}"
                   + (f" ({len(films.skipped)} skipped)" if films.skipped else ""))
        for line in films.skipped[:10]:
            st.caption(plain(line))
        running = job


VALIDATION = "sites_validation"  # the served model's validate-only figures, until accepted


def accept(validation: validating.LocalValidation, site: str) -> None:
    """An audited acceptance (a button callback): the model is validated at ``site`` from the
    next page run on, on every page."""
    try:
        done = validating.accept_validation(database, actor, site, validation)
    except (SiteNameError, AccountError) as error:
        st.session_state[OUTCOME] = (False, str(error))
    except AuditUnavailable:
        st.session_state[OUTCOME] = (False, PAUSED)
    else:
        st.session_state.pop(VALIDATION, None)
        st.session_state[OUTCOME] = (True, f"Accepted: {done.acceptance.model_version} is "
                                           f"validated at {done.acceptance.site} (audit row "
                                           f"{done.seq}).")


def show_acceptance(validation: validating.LocalValidation, key: str, site: str = "") -> None:
    """The figures against what docs/GOING_LIVE.md asks for, and "Accept: validated at SITE"
    (the site typed here, or the adaptation's)."""
    st.dataframe(validating.figure_rows(validation), hide_index=True, key=f"figures_{key}",
                 column_config={"Value": st.column_config.NumberColumn(format="%.3f")})
    short = validating.short_of_minimum(validation.films)
    if short:
        st.warning("Fewer films than docs/GOING_LIVE.md asks for (at least "
                   f"{validating.MIN_NORMAL_FILMS} normal films and "
                   f"{validating.MIN_FINDING_FILMS} of each finding): {'; '.join(short)}. "
                   "The figures are too loose to accept the model on.",
                   icon=":material/warning:")
    if not site:
        site = st.text_input("Site name", key=f"accept_site_{key}", placeholder="st-mary",
                             help="Letters, digits, - and _; at most "
                             f"{MAX_SITE_NAME_CHARS} characters.")
    try:
        name = site_name(site)
    except SiteNameError as error:
        name = None
        if site:
            st.error(plain(str(error)))
    st.button(f"Accept: validated at {name or 'SITE'}", icon=":material/verified:",
              key=f"accept_{key}", on_click=accept, args=(validation, name or ""),
              disabled=name is None or bool(short))


st.subheader("Validate the served model at a site")
accepted = accepted_validation(database, current.version)
if accepted is None:
    st.warning(f"{plain(current.version)} has not been validated at this site: every result "
               "says so until an admin accepts a local validation.", icon=":material/warning:")
else:
    st.success(f"{plain(current.version)} is validated at {accepted.acceptance.site}: accepted "
               f"by {plain(accepted.username)} on {accepted.at:%Y-%m-%d %H:%M} UTC "
               f"({sites.label_counts_text(accepted.films)}; audit row {accepted.seq}).",
               icon=":material/verified:")
with st.container(border=True):
    validation_zip = st.file_uploader(
        "Labelled films (.zip)", type=["zip"], key="validation_zip",
        help="Label folders (NORMAL/, PNEUMONIA/, COVID19/ ...), read as an adaptation reads "
             "them. The served model is scored as it is, on every film; nothing is adapted.")
    if st.button("Validate only", icon=":material/fact_check:", key="validate_only",
                 disabled=validation_zip is None):
        try:
            with st.spinner("Scoring the served model on the site's films…"):
                validation, films = validating.validate_only(
                    current, validation_zip.name, validation_zip.getvalue(),
                    ZipLimits.from_settings(settings, DEFAULT_LIMITS.max_upload_bytes),
                    settings.sites_dir)
        except (sites.SiteInputError, ValidationFailed) as error:
            st.error(plain(str(error)), icon=":material/error:")
        else:
            st.session_state[VALIDATION] = validation
            for line in films.skipped[:10]:
                st.caption(plain(line))
    pending = st.session_state.get(VALIDATION)
    if pending is not None and pending.model.version == current.version:
        st.markdown(f"**{plain(pending.model.version)}** as it is, on "
                    f"{sites.label_counts_text(pending.films)}:")
        show_acceptance(pending, "validate_only")


def show_result(status: jobs.JobStatus) -> None:
    report = sites.site_report(status.job.out)
    if report is None:
        st.warning("The adapted run has no site report in its metrics.json.")
        return
    st.markdown(f"{report['n']} films ({sites.label_counts_text(report['labels'])}): "
                f"{report['fitted_on']} fitted on, {report['held_out']} held out by "
                f"{report['held_out_by']}. What was adapted: {plain(report['adapted'])}.")
    st.dataframe(sites.before_after_rows(report), hide_index=True,
                 key=f"before_after_{status.job.folder.name}",
                 column_config={"Before": st.column_config.NumberColumn(format="percent"),
                                "After": st.column_config.NumberColumn(format="percent")})
    metadata = read_metadata(status.job.out)
    classes = list(metadata.classes)
    columns = st.columns(2)
    for column, when in zip(columns, ("before", "after"), strict=True):
        figures = report.get(f"held_out_{when}")
        if figures:
            column.markdown(f"**{when.capitalize()}** (held-out local films)")
            labels, counts = sites.held_out_confusion(figures, classes)
            figure = confusion_matrix_figure(classes, counts, axes=("label", "called"),
                                             rows=labels)
            column.plotly_chart(figure.update_layout(height=200 + 60 * len(labels)),
                                config=CHART_CONFIG,
                                key=f"confusion_{when}_{status.job.folder.name}")
    version = metadata.version
    adapted = validating.from_adaptation(status.job, version)
    if adapted is not None:
        show_acceptance(adapted, status.job.folder.name, status.job.site)
    st.button(f"Activate {version}", icon=":material/published_with_changes:", type="primary",
              key=f"activate_{status.job.folder.name}", on_click=switch, args=(status.job.out,),
              disabled=bool(server_url) or status.job.out.resolve() == current.run_dir.resolve())


@st.fragment(run_every=2 if running else None)
def adaptations() -> None:
    if OUTCOME in st.session_state:
        st.rerun()  # Activate (a button in here) reran only this part: redraw the whole page
    st.subheader("Adaptations")
    listed = jobs.jobs(settings.sites_dir)
    if not listed:
        st.info("No site has been onboarded yet.")
    for job in listed:
        status = jobs.status(job)
        title = (f"{job.site}: {status.state}, {status.seconds:.0f} s "
                 f"(started {job.started_at:%Y-%m-%d %H:%M} UTC)")
        with st.expander(title, expanded=job == listed[0]):
            if status.state == RUNNING:
                st.info(f"Adapting {sites.label_counts_text(job.films)} from "
                        f"{job.base_run_dir.name}; running for {status.seconds:.0f} s "
                        "(up to about 5 minutes).", icon=":material/hourglass_top:")
                st.code("\n".join(status.log_tail) or "starting…", language=None)
            elif status.state == DONE:
                show_result(status)
            else:
                st.error(plain(status.message), icon=":material/error:")
    if running is not None and jobs.running_job(settings.sites_dir) is None:
        st.rerun()  # the job ended: redraw the page (its Start button, the served model)


adaptations()
st.caption(f"Adapted run directories: {settings.sites_dir}. Now: "
           f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC.")
