"""The MLflow server ``harness ui`` starts: MLflow's own, opening on the model-training view.

MLflow 3 has two views of an experiment: GenAI (traces, evaluations) and model training (runs,
metrics, charts).  Its releases up to 3.4 chose one from the experiment tag
``mlflow.experimentKind``, which the tracker sets on every study's experiment; later ones
choose per browser, from a stored setting (``mlflow.workflowType_v1`` in the page's
localStorage, GenAI until a user flips the switch in the sidebar) or the URL's
``workflowType`` parameter.  This app is MLflow's ASGI app unchanged, except that its page
stores "model training" as that setting where the browser has none yet: a harness store opens
on its runs, and a user's own choice stays.

Registered as the MLflow app ``harness`` (``mlflow server --app-name harness``, entry point
group ``mlflow.app``).
"""

from __future__ import annotations

from mlflow.server import app as _flask_app
from mlflow.server.fastapi_app import app  # noqa: F401 - the ASGI app uvicorn serves

WORKFLOW_KEY = "mlflow.workflowType_v1"
MODEL_TRAINING = "machine_learning"
DEFAULT_VIEW_SCRIPT = (
    "<script>try{if(localStorage.getItem('%s')===null)"
    "localStorage.setItem('%s',JSON.stringify('%s'))}catch(e){}</script>"
    % (WORKFLOW_KEY, WORKFLOW_KEY, MODEL_TRAINING)
)


def _default_view(response):
    """MLflow's page (``index.html``, served for ``/``) with the script first in its head."""
    if response.mimetype != "text/html" or response.status_code != 200:
        return response
    response.direct_passthrough = False  # a file response: read it to rewrite it
    page = response.get_data(as_text=True)
    if "<head>" not in page or WORKFLOW_KEY in page:
        return response
    response.set_data(page.replace("<head>", "<head>" + DEFAULT_VIEW_SCRIPT, 1))
    return response


_flask_app.after_request(_default_view)
