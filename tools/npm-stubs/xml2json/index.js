// See package.json: used by the open311 package only for format "xml".
module.exports = {
  toJson: function () {
    throw new Error('xml2json is not installed (needs node-expat 1.4); use the open311 client with format "json"');
  }
};
