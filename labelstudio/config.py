"""The labeling config and annotator instructions of a defectloop Label Studio project."""

from __future__ import annotations

IMAGE = "image"
CHOICES = "verdict"
BRUSH = "mask"
CLICK = "click"
BOX = "box"
MODEL_VIEW = "model_view"
CLICK_LABEL = "Click a defect"
BOX_LABEL = "Box a defect"
OK = "OK"
DEFECT = "Defect"


def label_config() -> str:
    """Image + OK/Defect choice + a Defect brush: the controls every project uses; and the
    smart click and box tools (shown with Auto-Annotation on), whose point or box defectloop's
    ML backend answers with the defect's mask as a brush region."""
    return f"""<View>
  <Image name="{IMAGE}" value="${IMAGE}" zoom="true"/>
  <Header value="$instruction"/>
  <Choices name="{CHOICES}" toName="{IMAGE}" choice="single" showInLine="true" required="false">
    <Choice value="{OK}"/>
    <Choice value="{DEFECT}"/>
  </Choices>
  <HyperText name="{MODEL_VIEW}" value="$overlay" inline="true"/>
  <BrushLabels name="{BRUSH}" toName="{IMAGE}">
    <Label value="{DEFECT}" background="#ff0000"/>
  </BrushLabels>
  <KeyPointLabels name="{CLICK}" toName="{IMAGE}" smart="true" smartOnly="true">
    <Label value="{CLICK_LABEL}" background="#ff8800" smart="true"/>
  </KeyPointLabels>
  <RectangleLabels name="{BOX}" toName="{IMAGE}" smart="true" smartOnly="true">
    <Label value="{BOX_LABEL}" background="#ff8800" smart="true"/>
  </RectangleLabels>
</View>"""


INSTRUCTIONS = """<h3>Is this part defective?</h3>
<p>Choose <b>Defect</b> when the surface shows any flaw that would fail inspection
(scratch, crack, spot, pit, break, fray, uneven area); otherwise choose <b>OK</b>.</p>
<p>When the task asks for a mask, paint every defective pixel with the <b>Defect</b> brush.
With <b>Auto-Annotation</b> on, the smart point (or box) tool makes the mask for you: click
the middle of a defect (or drag a box around it) and its mask appears as a brush region to
accept or touch up. A verdict-only task needs no painting, and a brush there is ignored.</p>
<p>The pre-filled verdict and mask are the model's suggestion, not the truth: correct them
freely. Your answer is what trains the next model.</p>"""
