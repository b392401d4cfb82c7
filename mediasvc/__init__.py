"""mediasvc: DICOM media and film service for the burner host of a radiology department."""

__version__ = "0.1.0"
APPLICATION_NAME = "mediasvc"
