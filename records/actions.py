"""Every action name the audit trail records, in one place.

Rows store these strings; monitoring, feedback and the exports select by them, so a name here
is a contract with every trail already written: add names, never rename one.
"""

SIGN_IN = "sign-in"
FAILED_SIGN_IN = "failed sign-in"
SIGN_OUT = "sign-out"
ANALYSIS = "analysis"
REFUSAL = "refusal"
HEATMAP_VIEWED = "heatmap class viewed"
DOWNLOAD = "download"
FEEDBACK = "feedback"
SENT_TO_PACS = "results sent to PACS"

# Admin actions share a prefix, so the trail can be filtered for them.
ADMIN_PREFIX = "admin:"
ADD_ACCOUNT = ADMIN_PREFIX + "add-account"
DISABLE_ACCOUNT = ADMIN_PREFIX + "disable-account"
ENABLE_ACCOUNT = ADMIN_PREFIX + "enable-account"
RESET_PASSWORD = ADMIN_PREFIX + "reset-password"
UNLOCK_ACCOUNT = ADMIN_PREFIX + "unlock-account"
KEEP_IMAGES = ADMIN_PREFIX + "keep-images"
VERIFY_AUDIT = ADMIN_PREFIX + "verify-audit"
EXPORT_AUDIT = ADMIN_PREFIX + "export-audit"
ACTIVATE_MODEL = ADMIN_PREFIX + "activate-model"
RESTORE_MODEL = ADMIN_PREFIX + "restore-previous-model"
ADAPTATION_STARTED = ADMIN_PREFIX + "adaptation-started"
ADAPTATION_REFUSED = ADMIN_PREFIX + "adaptation-refused"
ADAPTATION_FINISHED = ADMIN_PREFIX + "adaptation-finished"
ACCEPT_VALIDATION = ADMIN_PREFIX + "accept-site-validation"
