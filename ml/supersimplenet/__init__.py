"""SuperSimpleNet: frozen features, a feature adaptor, a segmentation and a classification head."""
